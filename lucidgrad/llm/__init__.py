"""Language models on the Tensor API: fetching a checkpoint, its tokenizer, llama and GPT-2 models, sampling and chat.
Like nn/, this layer builds only on the public Tensor API (docs/architecture.md)."""
