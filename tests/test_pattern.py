"""UPat matching, PatternMatcher dispatch, and graph_rewrite: bottom-up and top-down order, the old -> new map, deep
graphs, and rules that answer NOT_READY until their siblings are rewritten."""
import functools, pytest
from lucidgrad.dtype import dtypes
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite, graph_rewrite_map, NOT_READY, RewriteStats

def c(v, dt=dtypes.int32) -> UOp: return UOp.const(dt, v)
x, y = UOp.range(10, rid=(0,)), UOp.range(20, rid=(1,))
f = UOp(Ops.LOAD, dtypes.float32, (UOp(Ops.INDEX, dtypes.float32.as_ptr(), (UOp(Ops.DEFINE_GLOBAL, dtypes.float32.as_ptr(), (), (0, 4)), x, c(True, dtypes.bool))),))
def matches(pat: UPat, u: UOp) -> list[dict]: return pat.match(u, {})

# ---- UPat ----
def test_upat_matches_op_sets_dtypes_and_args():
  assert matches(UPat((Ops.ADD, Ops.MUL)), x + y) and matches(UPat((Ops.ADD, Ops.MUL)), x * y)
  assert not matches(UPat((Ops.ADD, Ops.MUL)), x // y)
  assert matches(UPat(dtype=dtypes.float32), f) and not matches(UPat(dtype=dtypes.int32), f)
  assert matches(UPat(dtype=(dtypes.int32, dtypes.float32)), f)
  assert matches(UPat(dtype=dtypes.float32), UOp.const(dtypes.float32.vec(4), 1.0)), "a vector matches its scalar dtype"
  assert matches(UPat(Ops.CONST, arg=3), c(3)) and not matches(UPat(Ops.CONST, arg=3), c(4))
  assert matches(UPat.cvar("k"), c(4)) == [{"k": c(4)}]
  assert not matches(UPat.cvar(), x)

def test_upat_sources_in_order_any_length_and_any():
  add = x + c(1)
  assert matches(UPat(Ops.ADD, src=(UPat(Ops.RANGE), UPat(Ops.CONST))), add)
  assert not matches(UPat(Ops.ADD, src=(UPat(Ops.CONST), UPat(Ops.RANGE))), add)
  assert not matches(UPat(Ops.ADD, src=(UPat(Ops.RANGE),)), add)
  assert matches(UPat(Ops.ADD, src=(UPat(Ops.RANGE),), allow_any_len=True), add)
  assert matches(UPat(Ops.ADD), add), "src=None matches any sources"
  assert matches(UPat(Ops.RANGE, src=UPat(Ops.CONST, arg=10)), x), "one UPat as src is a one-source tuple"

def test_upat_name_binds_the_same_node_twice():
  twice = UPat(Ops.ADD, src=(UPat.var("a"), UPat.var("a")))
  assert matches(twice, x + x) == [{"a": x}]
  assert not matches(twice, x + y)
  assert matches(UPat.var("a") - UPat.var("a"), x - x) and not matches(UPat.var("a") - UPat.var("a"), x - y)

def test_upat_commutative_sources_match_both_orders():
  pat = UPat(Ops.ADD, src=[UPat(Ops.RANGE, name="r"), UPat.cvar("k")])
  assert matches(pat, x + c(1)) == [{"r": x, "k": c(1)}]
  assert matches(pat, c(1) + x) == [{"r": x, "k": c(1)}]
  assert not matches(pat, x + y)
  # every way that matches is returned: here both orders
  assert len(matches(UPat(Ops.ADD, src=[UPat.var("p"), UPat.var("q")]), x + y)) == 2
  # operator sugar builds lists for commutative ops, tuples for the rest
  assert isinstance((UPat.var("a") + 1).src, list) and isinstance((UPat.var("a") - 1).src, tuple)
  assert matches(UPat.var("a") * 2, c(2) * x) and not matches(UPat.var("a") - 2, c(2) - x)

# ---- PatternMatcher ----
def test_matcher_only_tries_rules_for_the_nodes_op():
  calls = {"ADD": 0, "MUL": 0, "ANY": 0}
  def count(k):
    def fn(u): calls[k] += 1
    return fn
  pm = PatternMatcher([(UPat(Ops.ADD, name="u"), count("ADD")), (UPat(Ops.MUL, name="u"), count("MUL")), (UPat(name="u"), count("ANY"))])
  graph = UOp.sink((x + y) // c(3))
  graph_rewrite(graph, pm)
  assert calls == {"ADD": 1, "MUL": 0, "ANY": len(graph.toposort)}

def test_matcher_first_rule_that_answers_wins_in_list_order():
  seen = []
  pm = PatternMatcher([
    (UPat(name="u"), lambda u: seen.append("any") or None),       # applies to every op, answers nothing
    (UPat(Ops.ADD, name="u"), lambda u: c(1)),
    (UPat(Ops.ADD, name="u"), lambda u: c(2)),
  ])
  assert pm.rewrite(x + y) is c(1) and seen == ["any"]
  assert PatternMatcher([(UPat(Ops.ADD, name="u"), lambda u: u)]).rewrite(x + y) is None, "a rule returning its input did nothing"

def test_matcher_passes_ctx_only_to_rules_that_ask():
  pm = PatternMatcher([(UPat(Ops.ADD, name="u"), lambda ctx, u: ctx.append(u) or None), (UPat(Ops.MUL, name="u"), lambda u: None)])
  got: list = []
  pm.rewrite(x + y, ctx=got)
  pm.rewrite(x * y, ctx=got)
  assert got == [x + y]

def test_matcher_compiles_a_rule_when_a_node_of_its_op_first_comes_and_keeps_the_order(monkeypatch):
  import lucidgrad.uop.pattern as P
  compiled: list = []
  real = P.compile_rule
  monkeypatch.setattr(P, "compile_rule", lambda pat, fn, wants_ctx: compiled.append(fn) or real(pat, fn, wants_ctx))
  add1, mul, anyop = (lambda u: None), (lambda u: c(7)), (lambda u: None)
  add2 = lambda u: c(1)
  pm = PatternMatcher([(UPat(Ops.ADD, name="u"), add1), (UPat(Ops.MUL, name="u"), mul), (UPat(name="u"), anyop), (UPat(Ops.ADD, name="u"), add2)])
  assert compiled == [] and pm.op_mask & (1 << list(Ops).index(Ops.SUB))  # the any-op rule is tried on every op
  assert pm.rewrite(x + y) is c(1) and compiled == [add1, anyop, add2]   # ADD's rules in list order, the any-op one among them
  assert pm.rewrite(x - y) is None and compiled == [add1, anyop, add2]   # SUB has only the any-op rule: compiled already
  mul2 = lambda u: c(8)
  both = pm + PatternMatcher([(UPat(Ops.MUL, name="u"), mul2)])
  assert both.rewrite(x + y) is c(1) and compiled == [add1, anyop, add2]  # the sum shares what its parts compiled
  assert both.rewrite(x * y) is c(7) and compiled == [add1, anyop, add2, mul, mul2]  # MUL's rules, the first one answering
  # ctx is read off the callback's own parameters, through wrappers and bound methods too
  class Rules:
    def method(self, ctx, u): return ctx
  wrapped = functools.wraps(lambda ctx, u: ctx)(lambda *a, **k: k["ctx"])
  for fn in (lambda ctx, u: ctx, Rules().method, wrapped, lambda u, *, ctx: ctx):
    assert PatternMatcher([(UPat(Ops.ADD, name="u"), fn)]).rewrite(x + y, ctx=c(3)) is c(3) and not PatternMatcher([(UPat(Ops.ADD, name="u"), fn)]).remembers
  assert PatternMatcher([(UPat(Ops.ADD, name="u"), lambda u, **kw: None)]).remembers

# ---- graph_rewrite ----
def visit_order(top_down: bool) -> list[str]:
  order: list[str] = []
  pm = PatternMatcher([(UPat(name="u"), lambda ctx, u: ctx.append(u.op.name) or None)])
  graph_rewrite(UOp.sink(x.alu(Ops.NEG) + c(5).alu(Ops.NEG)), pm, ctx=order, top_down=top_down)
  return order

def test_bottom_up_rewrites_sources_first_and_top_down_users_first():
  bu, td = visit_order(False), visit_order(True)
  assert bu.index("RANGE") < bu.index("NEG") < bu.index("ADD") < bu.index("SINK")
  assert td.index("SINK") < td.index("ADD") < td.index("NEG") < td.index("RANGE")

def test_top_down_sees_a_pattern_before_its_sources_are_rewritten():
  pm = PatternMatcher([
    (UPat(Ops.ADD, src=[UPat(Ops.MUL, name="m"), UPat.var("z")]), lambda m, z: UOp.const(dtypes.int32, 99)),
    (UPat(Ops.MUL, src=(UPat.var("a"), UPat.const(dtypes.int32, 2))), lambda a: a + a),
  ])
  e = UOp.sink(x * 2 + y)
  assert graph_rewrite(e, pm, top_down=True).src[0] is c(99)
  assert graph_rewrite(e, pm).src[0] is (x + x) + y, "bottom-up turned the MUL into an ADD before its user was tried"

def test_rewrite_runs_to_a_fixed_point_and_keeps_shared_nodes_shared():
  pm = PatternMatcher([(UPat(Ops.CONST, arg=1, name="k"), lambda k: c(2)), (UPat(Ops.CONST, arg=2, name="k"), lambda k: c(3))])
  s = x + c(1)
  out = graph_rewrite(UOp.sink(s * s, s), pm)
  assert out.src[0].src[0] is out.src[0].src[1] is out.src[1] is x + c(3)

@pytest.mark.parametrize("top_down", [False, True])
def test_rewrite_map_gives_old_to_new_for_every_node(top_down):
  pm = PatternMatcher([(UPat(Ops.CONST, arg=2, name="k"), lambda k: c(3)),
                       (UPat(Ops.MUL, src=(UPat.var("a"), UPat(Ops.CONST, arg=2))), lambda a: a + a)])
  sink = UOp.sink(x * 2, y + 5)
  m = graph_rewrite_map(sink, pm, top_down=top_down)
  assert set(m) == set(sink.toposort)
  assert m[sink] is graph_rewrite(sink, pm, top_down=top_down)
  assert m[x * 2] is (x + x if top_down else x * c(3)) and m[y + 5] is y + 5 and m[x] is x
  # top-down replaced x * 2 before visiting its 2: that still maps to its own rewrite
  assert m[c(2)] is c(3)

def test_rewrite_map_follows_replace_seeds():
  m = graph_rewrite_map(UOp.sink(x + y), PatternMatcher([]), replace={x: y})
  assert m[x] is y and m[x + y] is y + y and m[y] is y

@pytest.mark.parametrize("top_down", [False, True])
def test_deep_chain_rewrites_without_recursion(top_down):
  one, n = c(1), 5000
  chain = x
  for _ in range(n): chain = chain + one
  pm = PatternMatcher([(UPat(Ops.CONST, arg=1, name="k"), lambda k: c(2))])
  out = graph_rewrite(UOp.sink(chain), pm, top_down=top_down).src[0]
  depth = 0
  while out.op is Ops.ADD: depth, out = depth + 1, out.src[0]
  assert depth == n and out is x
  m = graph_rewrite_map(UOp.sink(chain), pm, top_down=top_down)
  assert m[chain].src[1] is c(2) and len(m) == n + 4

# ---- NOT_READY ----
def waits_for_sibling():
  """A rule on NEG answers NOT_READY until the SQRT beside it was rewritten; ctx records the order."""
  def neg(ctx, u):
    if "SQRT" not in ctx: ctx.append("NEG not ready"); return NOT_READY
    ctx.append("NEG"); return c(1)
  def sqrt(ctx, u): ctx.append("SQRT"); return c(2)
  return PatternMatcher([(UPat(Ops.NEG, name="u"), neg), (UPat(Ops.SQRT, name="u"), sqrt)])

@pytest.mark.parametrize("top_down", [False, True])
def test_not_ready_is_retried_after_its_siblings(top_down):
  order: list[str] = []
  out = graph_rewrite(UOp.sink(x.alu(Ops.NEG), y.alu(Ops.SQRT)), waits_for_sibling(), ctx=order, top_down=top_down)
  assert out.src == (c(1), c(2))
  assert order == ["NEG not ready", "SQRT", "NEG"]

@pytest.mark.parametrize("top_down", [False, True])
def test_not_ready_result_of_a_rewrite_is_retried(top_down):
  # MUL becomes NEG, which is not ready until the SQRT beside the MUL was rewritten
  pm = waits_for_sibling() + PatternMatcher([(UPat(Ops.MUL, name="u"), lambda u: u.src[0].alu(Ops.NEG))])
  order: list[str] = []
  out = graph_rewrite(UOp.sink(x * y, y.alu(Ops.SQRT)), pm, ctx=order, top_down=top_down)
  assert out.src == (c(1), c(2)) and order == ["NEG not ready", "SQRT", "NEG"]

@pytest.mark.parametrize("top_down", [False, True])
def test_never_ready_raises(top_down):
  pm = PatternMatcher([(UPat(Ops.NEG), lambda: NOT_READY)])
  with pytest.raises(RuntimeError, match="NOT_READY"): graph_rewrite(UOp.sink(x.alu(Ops.NEG)), pm, top_down=top_down)
  with pytest.raises(RuntimeError, match="NOT_READY"): graph_rewrite(x.alu(Ops.NEG), pm, top_down=top_down)

# ---- compiled rules: the same matches, in the same order, as UPat.match ----
def calls_of(pat: UPat, u: UOp) -> tuple[list[dict], list[dict]]:
  """The bindings a rule is called with, in order, by UPat.match and by the compiled rule (the rule never answers)."""
  from lucidgrad.uop.pattern import compile_rule
  got: list[dict] = []
  compile_rule(pat, lambda **kw: got.append(kw), wants_ctx=False)(u, None)
  return [m for m in pat.match(u, {})], got

z = UOp.range(30, rid=(2,))
@pytest.mark.parametrize("pat, u", [
  (UPat(Ops.ADD, src=[UPat.var("p"), UPat.var("q")]), x + y),                                   # both orders
  (UPat(Ops.ADD, src=[UPat(Ops.MUL, src=[UPat.var("a"), UPat.var("b")]), UPat.var("c")]), x * y + z),  # nested orders
  (UPat(Ops.ADD, src=[UPat.var("a"), UPat.var("a")]), x + x),                                   # a name bound twice
  (UPat(Ops.ADD, src=[UPat.var("a"), UPat.var("a")]), x + y),
  (UPat(Ops.ADD, src=(UPat(Ops.RANGE, name="r"),), allow_any_len=True, name="n"), x + y),
  (UPat(Ops.ADD, src=(UPat(Ops.RANGE),)), x + y),                                               # wrong length
  (UPat(Ops.ADD, src=[UPat.cvar("k"), UPat.var("v")]), x + c(3)),
  (UPat(Ops.ADD, src=[UPat(Ops.CONST, arg=3, name="k"), UPat.var("v")]), x + c(4)),             # arg
  (UPat(Ops.ADD, dtype=dtypes.float32, name="n"), UOp.const(dtypes.float32.vec(2), 1.0) + UOp.const(dtypes.float32.vec(2), 2.0)),
  (UPat(Ops.ADD, dtype=dtypes.int64, name="n"), x + y),
  (UPat(Ops.WHERE, src=(UPat.var(), UPat.var("a"), UPat.var("a"))), (x < c(3)).where(y, y)),
])
def test_compiled_rule_calls_back_with_the_matches_of_upat_match(pat, u):
  want, got = calls_of(pat, u)
  assert got == want

def test_compiled_rule_returns_the_first_answer_and_skips_none_and_itself():
  from lucidgrad.uop.pattern import compile_rule
  answers = iter([None, x + y, c(7)])  # first order answers nothing, second the node itself: the rule goes on to neither
  rule = compile_rule(UPat(Ops.ADD, src=[UPat.var("p"), UPat.var("q")]), lambda p, q: next(answers), wants_ctx=False)
  assert rule(x + y, None) is None
  rule = compile_rule(UPat(Ops.ADD, name="u"), lambda ctx, u: ctx, wants_ctx=True)
  assert rule(x + y, c(5)) is c(5)

def test_matcher_skips_a_rule_whose_source_op_is_missing():
  seen = []
  pm = PatternMatcher([(UPat(Ops.ADD, src=[UPat(Ops.CONST), UPat.var("v")]), lambda v: seen.append(v))])
  pm.rewrite(x + y)
  assert seen == []
  pm.rewrite(x + c(1))
  assert seen == [x]

# ---- rewrites skip what they can prove unchanged ----
def visits(fn) -> int:
  before = RewriteStats.nodes_visited
  fn()
  return RewriteStats.nodes_visited - before

def test_a_graph_without_any_op_a_rule_is_tried_on_is_not_visited():
  calls = []
  pm = PatternMatcher([(UPat(Ops.SQRT, name="u"), lambda u: calls.append(u))])
  big = UOp.sink(*[(x + c(i)) * y for i in range(50)])
  assert visits(lambda: graph_rewrite(big, pm)) == 0 and calls == []
  with_sqrt = UOp.sink(big, y.alu(Ops.SQRT))
  assert visits(lambda: graph_rewrite(with_sqrt, pm)) == 2, "the sink and the SQRT, not the SQRT's source nor big"
  assert calls == [y.alu(Ops.SQRT)]
  # the same holds top-down, and a seed from `replace` inside such a graph is still replaced
  assert visits(lambda: graph_rewrite(big, pm, top_down=True)) == 0
  assert graph_rewrite(big, pm, replace={y: z}).src[0] is (x + c(0)) * z

def test_a_rewritten_graph_is_not_visited_again_by_its_matcher():
  pm = PatternMatcher([(UPat(Ops.CONST, arg=1, name="k"), lambda k: c(2)), (UPat(Ops.MUL, name="m"), lambda m: None)])
  g = UOp.sink(*[(x + c(1)) * c(i) for i in range(20)])
  out = graph_rewrite(g, pm)
  assert visits(lambda: graph_rewrite(out, pm)) == 0
  assert graph_rewrite(out, pm) is out
  # a new graph over the old one visits only what is new
  assert visits(lambda: graph_rewrite(UOp.sink(out, x * c(99)), pm)) == 3
  # marks belong to a matcher: another one visits everything; a ctx matcher neither marks nor skips
  other = PatternMatcher([(UPat(name="m"), lambda m: None)])
  assert visits(lambda: graph_rewrite(out, other)) == len(out.toposort)
  ctx_pm = PatternMatcher([(UPat(name="m"), lambda ctx, m: None)])
  assert visits(lambda: graph_rewrite(out, ctx_pm, ctx=1)) == visits(lambda: graph_rewrite(out, ctx_pm, ctx=1)) == len(out.toposort)
  # replace seeds turn marks off: x inside the marked graph is still replaced
  assert graph_rewrite(out, pm, replace={x: z}).src[0].src[0] is z + c(2)

# ---- substitute ----
def test_substitute_replaces_keys_shares_the_rest_and_does_not_substitute_into_values():
  a, b = x + c(1), y * c(2)
  g = UOp.sink(a * b, b, a + a)
  out = g.substitute({x: y})
  assert out.src[0] is (y + c(1)) * b and out.src[1] is b and out.src[2] is (y + c(1)) + (y + c(1))
  assert g.substitute({x: x + x}).src[1] is b and g.substitute({x: y + x}).src[0].src[0] is (y + x) + c(1)
  assert g.substitute({}) is g and g.substitute({g: c(0)}) is c(0)

# ---- pass times ----
def test_timed_records_calls_and_self_time_without_nested_passes():
  import time
  from lucidgrad.uop.pattern import timed
  RewriteStats.reset()
  @timed("outer")
  def outer():
    with timed("inner"):
      st = time.process_time()
      while time.process_time() - st < 0.02: pass
  outer(); outer()
  (oc, os_, _), (ic, is_, _) = RewriteStats.passes["outer"], RewriteStats.passes["inner"]
  assert oc == ic == 2 and is_ >= 0.04 and os_ < 0.01, "outer's own time excludes inner's"
  graph_rewrite(UOp.sink(x + y), PatternMatcher([]), name="a pass")
  assert RewriteStats.passes["a pass"][0] == 1

def test_a_name_that_is_no_identifier_still_binds():
  pm = PatternMatcher([(UPat(Ops.ADD, src=[UPat(Ops.CONST, name="the-const"), UPat.var("v")]), lambda **kw: kw["v"])])
  assert pm.rewrite(x + c(1)) is x

def test_a_matcher_made_per_call_is_freed_without_the_garbage_collector():
  import gc, weakref
  pm = PatternMatcher([(UPat(Ops.ADD, name="u"), lambda u: None)])
  pm.rewrite(x + y)  # fills its table (a graph_rewrite would leave it in the nodes' memos, alive as long as they are)
  gone = weakref.ref(pm)
  gc.disable()
  try:
    del pm
    assert gone() is None
  finally: gc.enable()
