"""A tiny but real text classifier and data set, built offline in seconds: for tests, notebooks and
demos that must not need the hub. The task (sentiment carried by a few cue words) is learnable, so
accuracy is meaningful and quantization effects are measurable."""
from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["good", "great", "excellent", "lovely", "wonderful", "fun", "charming", "brilliant"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "tedious", "poor"]
FILLER = ["the", "movie", "film", "was", "a", "really", "plot", "actors", "story", "and", "quite", "very",
          "this", "it", "is", "with", "some", "scenes", "ending", "music", "of", "an", "overall", "cast"]


def make_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(4, 14))
        cue = rng.choice(POSITIVE if label else NEGATIVE)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


def build_tiny_classifier(out: Path, train_steps: int = 60, seed: int = 0, layers: int = 2) -> Path:
    """A 2-layer BERT (hidden 32) with its own WordPiece vocabulary, briefly trained on the cue task."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POSITIVE + NEGATIVE + FILLER))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows = make_rows(32 * train_steps, seed + 1)
    model.train()
    for i in range(train_steps):
        batch = rows[32 * i : 32 * (i + 1)]
        enc = tok([t for t, _ in batch], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def write_tiny_project(root: Path, stages_yaml: str, gates_yaml: str = "", name: str = "tiny",
                       target: str = "x86-1769mb-zip", model_dir: Path | None = None) -> Path:
    """A self-contained project folder (model, data, target, pipeline file); returns the pipeline file."""
    root = Path(root)
    model = model_dir or build_tiny_classifier(root / "models" / "tiny")
    write_tsv(root / "data" / "eval.tsv", make_rows(200, 11))
    write_tsv(root / "data" / "calib.tsv", make_rows(64, 12))
    write_tsv(root / "data" / "train.tsv", make_rows(512, 13))  # for stages that train (distill, recovery)
    (root / "configs" / "targets").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "targets" / f"{target}.yaml").write_text(
        f"name: {target}\nmemory_mb: 1769\narchitecture: x86_64\npackage_type: zip\n")
    (root / "dvc.yaml").exists() or (root / "pyproject.toml").write_text("# marks the project root\n")
    file = root / "configs" / "pipelines" / f"{name}.yaml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"""name: {name}
model:
  path: {Path(model).resolve()}
  label_names: [negative, positive]
data:
  eval: {{path: data/eval.tsv}}
  calibration: {{path: data/calib.tsv}}
  train: {{path: data/train.tsv}}
  max_length: 32
target: {target}
{gates_yaml}
stages:
{stages_yaml}
""")
    return file
