"""The research search's pictures: the tree PNG, and the HTML page read back from a headless browser."""

import json
import re
import shutil
import subprocess

import pytest

from libs.evals import research_tree
from libs.search.tree import Tree


def _tree():
    tree = Tree()
    root = tree.add({"task": "wine"})
    a = tree.add({"plan": "draft A", "code": "print('</script><b>x</b>')\n", "output": "acc 0.8", "metric": 0.8,
                  "summary": "ok"}, [root.id], meta={"op": "draft"})
    b = tree.add({"plan": "draft B", "code": "raise SystemExit(1)", "output": "boom", "metric": None,
                  "summary": "crashed"}, [root.id], buggy=True, meta={"op": "draft"})
    tree.add({"plan": "fix B", "code": "print(0.9)", "output": "acc 0.9", "metric": 0.9, "summary": "fixed"},
             [b.id], meta={"op": "debug"})
    tree.add({"plan": "mix", "code": "print(0.85)", "output": "", "metric": 0.85, "summary": ""}, [a.id, b.id],
             meta={"op": "crossover"})
    return tree


def test_png_is_written(tmp_path):
    path = research_tree.plot_tree(_tree(), str(tmp_path / "tree.png"), lower_is_better=False)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_html_embeds_every_node_and_survives_script_tags_in_code(tmp_path):
    path = research_tree.write_html(_tree(), str(tmp_path / "tree.html"), title="wine <run>")
    text = open(path).read()
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched
    data = re.search(r'<script id="nodes" type="application/json">(.*?)</script>', text, re.S).group(1)
    nodes = json.loads(data)
    assert [n["id"] for n in nodes] == [0, 1, 2, 3, 4] and nodes[4]["parents"] == [1, 2]
    assert nodes[1]["code"] == "print('</script><b>x</b>')\n" and "wine &lt;run&gt;" in text


def test_best_node_respects_the_direction():
    tree = _tree()
    assert research_tree.best_node(tree.nodes, lower_is_better=False).state["plan"] == "fix B"
    assert research_tree.best_node(tree.nodes, lower_is_better=True).state["plan"] == "draft A"


def test_a_real_browser_renders_every_node(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium): the page is not rendered here")
    path = research_tree.write_html(_tree(), str(tmp_path / "tree.html"))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{path}"],
                          capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'data-rendered="(\d+)"', proc.stdout)
    assert match, proc.stderr[-2000:]
    assert int(match.group(1)) == 5
    assert proc.stdout.count('class="node') == 5
