# A ResNet-50 (torchvision's layout written out: torchvision does not install beside torch here) with random weights,
# exported to ONNX for `python bench/bench_onnx.py --model FILE`. Usage: python bench/onnx_resnet50_export.py out.onnx
import sys, torch, torch.nn as nn
class Bottleneck(nn.Module):
  def __init__(self, cin, mid, stride, down):
    super().__init__()
    self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
    self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
    self.c3, self.b3 = nn.Conv2d(mid, mid * 4, 1, bias=False), nn.BatchNorm2d(mid * 4)
    self.down = nn.Sequential(nn.Conv2d(cin, mid * 4, 1, stride, bias=False), nn.BatchNorm2d(mid * 4)) if down else None
  def forward(self, x):
    y = self.b3(self.c3(torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))))
    return torch.relu(y + (self.down(x) if self.down is not None else x))
class ResNet50(nn.Module):
  def __init__(self):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers, cin = [], 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
      for i in range(n):
        layers.append(Bottleneck(cin, mid, stride if i == 0 else 1, i == 0)); cin = mid * 4
    self.layers, self.fc = nn.Sequential(*layers), nn.Linear(2048, 1000)
  def forward(self, x): return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))
torch.manual_seed(0)
m = ResNet50().eval()
torch.onnx.export(m, torch.randn(1, 3, 224, 224), sys.argv[1], opset_version=17, input_names=["data"], output_names=["logits"], dynamo=False)
print("wrote", sys.argv[1])
