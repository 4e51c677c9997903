"""User documentation stays true: every config key is documented, every linked doc exists, and
the package points only to documents inside the repository."""
import os
import re

from detectron2.config import get_cfg

from bikestate import add_bikestate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _keys(node, prefix=""):
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _keys(value, key + ".")
        else:
            yield key


def test_every_bikestate_config_key_is_in_docs_config_md():
    added = set(_keys(add_bikestate_config(get_cfg()))) - set(_keys(get_cfg()))
    assert len(added) > 50
    text = open(os.path.join(REPO, "docs", "config.md"), encoding="utf-8").read()
    missing = sorted(k for k in added if f"`{k}`" not in text)
    assert not missing, f"keys missing from docs/config.md: {missing}"


def test_linked_docs_exist():
    for doc in ["README.md"] + [os.path.join("docs", f) for f in os.listdir(
            os.path.join(REPO, "docs")) if f.endswith(".md")]:
        text = open(os.path.join(REPO, doc), encoding="utf-8").read()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = os.path.normpath(os.path.join(REPO, os.path.dirname(doc), target))
            assert os.path.exists(path), f"{doc} links to {target}, which does not exist"


def test_code_points_only_to_documents_in_the_repository():
    for root, _, files in os.walk(os.path.join(REPO, "bikestate")):
        for name in files:
            if name.endswith((".py", ".yaml")):
                text = open(os.path.join(root, name), encoding="utf-8").read()
                assert "DESIGN.md" not in text, os.path.join(root, name)
                for doc in re.findall(r"\bdocs/([\w.-]+\.md)\b", text):
                    assert os.path.isfile(os.path.join(REPO, "docs", doc)), (name, doc)
