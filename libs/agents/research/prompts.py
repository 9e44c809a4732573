"""The operators' prompts: Jinja templates under configs/research_agent/prompts/<operator set>/<op>.j2.

Two operator sets follow aira-dojo's: `aide` (ports of AIDE's draft / improve / debug / analyze: a Memory of
good nodes, short plans, simple first drafts; crossover added so Evolutionary can use them) and `aira`
(one idea and one program per node, the previously explored ideas as memory, the compute budget stated,
debug that keeps the core method, crossover of two parents). Shared parts (`_task.j2`: the task, its
limits and the run command; `_memory.j2`; `_format.j2`: plan then one code block, for a multi-file task a
bundle of marked files) are included by each. `multi_file` (with `files` and `file_marker`) may be left
out of the context for a single-file task. Templates are rendered with StrictUndefined: a missing context
field is an error, not an empty string.
"""

from __future__ import annotations

import functools
import os
import re

import jinja2

from libs.train.errors import ConfigError

PROMPTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "configs", "research_agent", "prompts")
OPERATOR_SETS = ("aide", "aira")
OPERATORS = ("draft", "improve", "debug", "analyze", "crossover")


@functools.cache
def _environment(directory: str) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
                              autoescape=False, lstrip_blocks=True, keep_trailing_newline=True)


def render(operator_set: str, operator: str, directory: str = PROMPTS_DIR, **context) -> str:
    """The prompt of `operator` in `operator_set`, filled from `context` (see the templates for fields)."""
    if operator_set not in OPERATOR_SETS or operator not in OPERATORS:
        raise ConfigError(f"no prompt for operator set {operator_set!r} / operator {operator!r}: expected one of "
                          f"{OPERATOR_SETS} x {OPERATORS}")
    try:
        template = _environment(directory).get_template(f"{operator_set}/{operator}.j2")
    except jinja2.TemplateNotFound as e:
        raise ConfigError(f"prompt template missing: {os.path.join(directory, str(e))}") from None
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"prompt template {e.filename}:{e.lineno}: {e.message}") from None
    text = template.render(**context)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"  # the block tags leave blank runs
