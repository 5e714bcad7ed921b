"""The package's layers: topic modules build on the foundation, and on each other only along the lecture's chain."""
import ast

from aria_utils.setup import repo_root

PACKAGE = repo_root() / "aria_utils"
FOUNDATION = {"setup", "io", "data", "checkpoints", "fingerprint", "training", "progress", "plot",
              "record", "claims", "feedback", "augment", "scenes", "blocks", "pretrained"}
TOOLS = {"__init__", "runner", "timings", "student"}  # the package's front and the maintainers' commands, above all
# The only imports allowed between topic modules, each with its reason.
ALLOWED = {
    ("scratch", "transfer"),          # 01: the from-scratch reference is trained on 01's targets
    ("finetune", "protocol"),         # 03-05: the evaluation protocol -> its models
    ("pretext", "finetune"),
    ("pretext", "representation"),
    ("pretext", "protocol"),          # 04: the pretexts' CLI trains on the scene benchmark and fine-tunes on it
    ("representation", "protocol"),
    ("mae", "protocol"),
    ("vit", "transformer"),           # along the lecture's chain: transformer -> ViT -> MAE, CLIP
    ("vit_canvas", "vit"),
    ("mae", "transformer"),
    ("mae", "vit"),
    ("clip_toy", "transformer"),
    ("seq_toys", "transformer"),      # 06: the toy languages are learnt by the block of equations (1)-(6)
    ("sam_figures", "sam_toy"),       # 09: its figures draw the toy's networks and the real SAM's masks
    ("sam_figures", "sam_real"),
}


def imports(module: str) -> set[str]:
    """The package modules that `aria_utils/<module>.py` imports (relative or absolute, at any depth)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "aria_utils" and "." in node.module:
                out.add(node.module.split(".")[1])
    return out


def test_topic_modules_import_only_the_foundation_and_their_chain():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    topics = modules - FOUNDATION - TOOLS
    assert "multitask" in topics and "transformer" in topics
    bad = sorted((m, i) for m in topics for i in imports(m) if i in topics and (m, i) not in ALLOWED)
    assert not bad, f"imports between topic modules outside the lecture's chain: {bad}"
    low = sorted((m, i) for m in FOUNDATION for i in imports(m) if i in topics | TOOLS)
    assert not low, f"foundation modules importing topic modules: {low}"
    assert not [m for m in topics if "multitask" in imports(m)], "02's module is imported by no other topic module"
