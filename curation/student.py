"""The multilingual student, mode `head`: a classifier head on cached sentence embeddings.

Training keeps the best checkpoint by mean per-language macro-F1 on validation data, with a
rollback rule: a checkpoint that raises the mean but costs any language more than
`max_language_drop` is not taken. Probabilities are calibrated by temperature scaling on the
validation data. Dropout stays available at prediction time for MC-dropout (BALD).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from curation.config import StudentConfig
from curation.evaluation import macro_f1


def _language_f1(model: nn.Module, x: torch.Tensor, y: np.ndarray, langs: np.ndarray, classes: int) -> dict:
    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).numpy()
    return {lang: macro_f1(y[langs == lang], predicted[langs == lang], classes) for lang in np.unique(langs)}


def is_better(scores: dict[str, float], best: dict[str, float] | None, best_mean: float, max_drop: float) -> bool:
    """A checkpoint is kept when its mean per-language macro-F1 is higher and no language lost more
    than `max_drop` (the rollback rule that protects low-resource languages)."""
    regressed = best is not None and any(scores[k] < best.get(k, 0.0) - max_drop for k in scores)
    return float(np.mean(list(scores.values()))) > best_mean and not regressed


class HeadStudent:
    def __init__(self, dim: int, classes: int, config: StudentConfig):
        self.config, self.classes, self.dim = config, classes, dim
        torch.manual_seed(config.seed)
        layers = ([nn.Dropout(config.dropout), nn.Linear(dim, config.hidden), nn.GELU()] if config.hidden else [])
        self.model = nn.Sequential(*layers, nn.Dropout(config.dropout),
                                   nn.Linear(config.hidden or dim, classes))
        self.temperature = 1.0
        self.history: dict = {}

    def fit(self, x: np.ndarray, y: np.ndarray, langs: np.ndarray, validation: tuple | None = None) -> dict:
        """Train on (x, y); `validation` = (x, y, langs) drives early stopping and calibration."""
        c = self.config
        start = time.perf_counter()
        xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        best_state, best_scores, best_mean, since_best, rollbacks = None, None, -1.0, 0, 0
        xv = torch.from_numpy(validation[0].astype(np.float32)) if validation else None
        epochs = 0
        for _ in range(c.max_epochs):
            epochs += 1
            self.model.train()
            optimizer.zero_grad()
            loss_fn(self.model(xt), yt).backward()  # full batch: a head on a few thousand rows
            optimizer.step()
            if validation is None:
                continue
            scores = _language_f1(self.model, xv, validation[1], validation[2], self.classes)
            mean = float(np.mean(list(scores.values())))
            if is_better(scores, best_scores, best_mean, c.max_language_drop):
                best_state, best_scores, best_mean, since_best = copy.deepcopy(self.model.state_dict()), scores, mean, 0
            else:
                rollbacks += mean > best_mean  # better on average, but a language lost too much
                since_best += 1
                if since_best >= c.patience:
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        if validation is not None and c.calibrate:
            self.temperature = self._fit_temperature(xv, validation[1])
        self.history = {"epochs": epochs, "best_mean_language_f1": best_mean, "rollbacks": rollbacks,
                        "temperature": self.temperature, "rows_per_s": len(x) * epochs / (
                            time.perf_counter() - start)}
        return self.history

    def _fit_temperature(self, x: torch.Tensor, y: np.ndarray) -> float:
        self.model.eval()
        with torch.no_grad():
            logits = self.model(x)
        log_t = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=50)
        target = torch.from_numpy(y.astype(np.int64))

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(logits / log_t.exp(), target)
            loss.backward()
            return loss

        optimizer.step(closure)
        return float(log_t.detach().exp().clamp(0.05, 20.0))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(x.astype(np.float32))) / self.temperature, 1).numpy()

    def mc_dropout_proba(self, x: np.ndarray, samples: int) -> np.ndarray:
        """(samples, rows, classes) probabilities with dropout on."""
        self.model.train()
        xt = torch.from_numpy(x.astype(np.float32))
        with torch.no_grad():
            return np.stack([torch.softmax(self.model(xt) / self.temperature, 1).numpy() for _ in range(samples)])


def train_head(x: np.ndarray, y: np.ndarray, langs: np.ndarray, classes: int, config: StudentConfig,
               validation: tuple | None = None) -> HeadStudent:
    student = HeadStudent(x.shape[1], classes, config)
    student.fit(x, y, langs, validation)
    return student


def cv_accuracy_by_language(x: np.ndarray, y: np.ndarray, langs: np.ndarray, classes: int, config: StudentConfig,
                            folds: int = 3) -> dict[str, tuple[int, float]]:
    """Per language: its label count and the out-of-fold accuracy of fresh heads on its labels. Its
    trend over rounds is the language's measured gain from labels (`language_budget: gain`)."""
    fold = np.random.default_rng(config.seed).permutation(len(x)) % folds
    predicted = np.empty(len(x), dtype=int)
    for k in range(folds):
        train, test = fold != k, fold == k
        predicted[test] = train_head(x[train], y[train], langs[train], classes, config).predict_proba(
            x[test]).argmax(axis=1)
    correct = predicted == y
    return {lang: (int(np.sum(langs == lang)), float(correct[langs == lang].mean())) for lang in np.unique(langs)}


class EncoderStudent:
    """Mode `finetune`: mean-pooled encoder + linear head, trained end to end above `freeze_layers`.

    Layer-wise learning-rate decay (the top layer at `encoder_lr`, each lower one × `layer_lr_decay`,
    the head at `lr`), gradient accumulation, a compute cap (steps / seconds), bf16 or fp16 with loss
    scaling on a GPU, and the same per-language best-checkpoint rule as the head student.
    """

    def __init__(self, classes: int, config: StudentConfig, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        from curation.encoder import DEFAULT_ENCODER, build_e5_small, default_device

        torch.manual_seed(config.seed)
        self.config, self.classes = config, classes
        self.device = device or default_device()
        path = str(build_e5_small() if config.encoder == DEFAULT_ENCODER else config.encoder)
        self.prefix = "passage: " if config.encoder == DEFAULT_ENCODER else ""
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path).to(self.device)
        self.head = nn.Linear(self.encoder.config.hidden_size, classes).to(self.device)
        self.history: dict = {}
        self._freeze()

    def _freeze(self) -> None:
        frozen = [self.encoder.embeddings, *self.encoder.encoder.layer[: self.config.freeze_layers]]
        for module in frozen:
            module.requires_grad_(False)

    def parameter_groups(self) -> list[dict]:
        layers = self.encoder.encoder.layer
        groups = [{"params": list(self.head.parameters()), "lr": self.config.lr, "name": "head"}]
        for index in range(self.config.freeze_layers, len(layers)):
            lr = self.config.encoder_lr * self.config.layer_lr_decay ** (len(layers) - 1 - index)
            groups.append({"params": list(layers[index].parameters()), "lr": lr, "name": f"layer {index}"})
        return groups

    def _autocast(self):
        precision = self.config.precision
        if self.device == "cpu" or precision == "fp32":
            return torch.autocast("cpu", enabled=False), None
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return torch.autocast("cuda", dtype=dtype), scaler

    def _logits(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer([self.prefix + t for t in texts], padding=True, truncation=True, max_length=256,
                               return_tensors="pt").to(self.device)
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head(((hidden * mask).sum(1) / mask.sum(1)).float())

    def fit(self, texts: list[str], y: np.ndarray, langs: np.ndarray, validation: tuple | None = None) -> dict:
        c = self.config
        optimizer = torch.optim.AdamW(self.parameter_groups(), weight_decay=c.weight_decay)
        autocast, scaler = self._autocast()
        rng = np.random.default_rng(c.seed)
        target = torch.from_numpy(y.astype(np.int64)).to(self.device)
        start, steps, seen, losses = time.perf_counter(), 0, 0, []
        best_state, best_scores, best_mean = None, None, -1.0

        def capped() -> bool:
            return bool((c.max_steps and steps >= c.max_steps)
                        or (c.max_seconds and time.perf_counter() - start >= c.max_seconds))

        for _ in range(c.finetune_epochs):
            order = rng.permutation(len(texts))
            self.encoder.train()
            for batch_number, first in enumerate(range(0, len(order), c.batch_size)):
                rows = order[first:first + c.batch_size]
                with autocast:
                    loss = nn.functional.cross_entropy(self._logits([texts[i] for i in rows]), target[rows])
                losses.append(float(loss))
                loss = loss / c.grad_accumulation
                (scaler.scale(loss) if scaler else loss).backward()
                seen += len(rows)
                if (batch_number + 1) % c.grad_accumulation == 0:
                    if scaler:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad()
                    steps += 1
                if capped():
                    break
            if validation is not None:
                predicted = self.predict_proba(validation[0]).argmax(axis=1)
                scores = {lang: macro_f1(validation[1][validation[2] == lang], predicted[validation[2] == lang],
                                         self.classes) for lang in np.unique(validation[2])}
                if is_better(scores, best_scores, best_mean, c.max_language_drop):
                    best_state = copy.deepcopy({"encoder": self.encoder.state_dict(), "head": self.head.state_dict()})
                    best_scores, best_mean = scores, float(np.mean(list(scores.values())))
            if capped():
                break
        if best_state is not None:
            self.encoder.load_state_dict(best_state["encoder"])
            self.head.load_state_dict(best_state["head"])
        seconds = time.perf_counter() - start
        self.history = {"steps": steps, "examples": seen, "examples_per_s": seen / seconds, "seconds": seconds,
                        "first_loss": losses[0], "last_loss": losses[-1], "best_mean_language_f1": best_mean,
                        "device": self.device}
        return self.history

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.encoder.eval()
        autocast, _ = self._autocast()
        with torch.no_grad(), autocast:
            return np.concatenate([torch.softmax(self._logits(texts[i:i + 64]), 1).cpu().numpy()
                                   for i in range(0, len(texts), 64)])
