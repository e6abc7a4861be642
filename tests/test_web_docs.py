"""The help pages the node library shows: web/docs/<node id>.md, served with the pack's web directory.

ComfyUI's frontend (1.35 of v0.8.0 and 1.49 of v0.33.0 alike) fetches /extensions/<pack folder>/docs/<node id>.md
for a custom node, where /extensions/<pack folder>/ is the pack's WEB_DIRECTORY (tests/test_comfyui_host.py
fetches them from a real server)."""
import re

import pytest

from helpers import PACK_ROOT
from nodes import NODE_CLASS_MAPPINGS

DOCS = PACK_ROOT / "web" / "docs"


def names_of(node_class) -> tuple[list[str], list[str]]:
    inputs = node_class.INPUT_TYPES()
    names = [name for section in ("required", "optional") for name in inputs.get(section, {})]
    return names, list(getattr(node_class, "RETURN_NAMES", None) or node_class.RETURN_TYPES)


def test_the_docs_folder_is_inside_the_web_directory():
    entry = (PACK_ROOT / "__init__.py").read_text(encoding="utf-8")
    web = re.search(r'^WEB_DIRECTORY = "\./(\w+)"$', entry, re.M)
    assert web and DOCS.parent == PACK_ROOT / web.group(1)


def test_every_page_belongs_to_a_node():
    assert sorted(p.stem for p in DOCS.glob("*.md") if p.stem not in NODE_CLASS_MAPPINGS) == []


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_every_node_has_a_page_naming_its_inputs_and_outputs(node_id):
    page = DOCS / f"{node_id}.md"
    assert page.is_file(), f"{node_id} has no help page: write {page.relative_to(PACK_ROOT)}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# "), "a page starts with its title"
    inputs, outputs = names_of(NODE_CLASS_MAPPINGS[node_id])
    missing = [name for name in inputs + outputs if f"`{name}`" not in text]
    assert missing == [], f"{page.name} does not describe {missing}"
