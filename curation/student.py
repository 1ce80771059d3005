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


class HeadStudent:
    def __init__(self, dim: int, classes: int, config: StudentConfig):
        self.config, self.classes = config, classes
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
            regressed = best_scores and any(scores[k] < best_scores[k] - c.max_language_drop for k in scores)
            if mean > best_mean and not regressed:
                best_state, best_scores, best_mean, since_best = copy.deepcopy(self.model.state_dict()), scores, mean, 0
            else:
                rollbacks += bool(mean > best_mean and regressed)
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
