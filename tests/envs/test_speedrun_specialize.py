"""Source specialisation: constant switches fold away with their dead branches, fields, parameters, checks
and helpers, comments about later features go, and what is left is valid Python that computes the same."""

import textwrap

from libs.envs.speedrun_bench import specialize

SOURCE = textwrap.dedent('''
    """Module docstring about nothing later."""
    import dataclasses

    MODES = ("a", "b")


    @dataclasses.dataclass(frozen=True)
    class Config:
        width: int = 4
        act: str = "gelu"  # "gelu" | "relu2" (the later one)
        norm: bool = False

        def __post_init__(self):
            choices = {"act": ("gelu", "relu2")}
            for name in ("width", "norm"):
                assert getattr(self, name) is not None
            if self.norm and self.width < 2:
                raise ValueError("norm needs width")


    def _helper(mode, x):
        if mode not in ("a", "b"):
            raise ValueError(mode)
        return x * 2 if mode == "b" else x


    def act(cfg, x, kind="plain", scale=1.0):
        # relu2 squares the positive part.
        if cfg.act == "relu2":
            x = max(x, 0) ** 2
        elif cfg.width > 8:
            x = x + 1
        else:
            x = x - 1
        if kind not in MODES:
            raise ValueError(kind)
        if kind == "a":
            return _helper(kind, x) * scale
        y = x if cfg.norm else -x
        return y
    ''')


def _folds(**kw):
    return specialize.Folds(attributes={"act": "gelu", "norm": True}, config_class="Config",
                            parameters={"act": {"kind": "a"}}, keep=frozenset({"Config", "act"}),
                            later_terms=("relu2",), **kw)


def test_folds_branches_fields_parameters_and_helpers():
    out = specialize.specialize(SOURCE, _folds())
    assert "relu2" not in out  # the branch, the field's comment and the choices entry
    assert "act: str" not in out and "norm: bool" not in out
    assert '("width", )' in out  # a one-element tuple keeps its comma
    assert "kind" not in out  # parameter removed, its uses folded, its check gone
    assert "MODES" not in out  # unreferenced after the fold
    assert "if x.width > 8" not in out and "cfg.width > 8" in out  # the elif became the if
    assert "mode" not in out  # _helper's constant argument folded into it
    assert "y = " not in out  # after the now unconditional return
    namespace = {}
    exec(compile(out, "<specialized>", "exec"), namespace)  # noqa: S102 - the test runs its own source
    cfg = namespace["Config"](width=10)
    assert namespace["act"](cfg, 3.0, scale=2.0) == 8.0  # (3 + 1) * 2: what the full code computes


def test_full_code_is_unchanged_without_folds():
    out = specialize.specialize(SOURCE, specialize.Folds(keep=frozenset({"Config", "act", "_helper", "MODES"})))
    assert out == SOURCE
