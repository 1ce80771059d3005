"""The multilingual student: a classifier head on cached sentence embeddings (mode `head`), or the
encoder trained with it (modes `finetune` and `lora`).

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
from curation.evaluation import language_f1


def _language_f1(model: nn.Module, x: torch.Tensor, y: np.ndarray, langs: np.ndarray, classes: int) -> dict:
    model.eval()
    with torch.no_grad():
        return language_f1(y, model(x).argmax(dim=1).numpy(), langs, classes)


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
            self.model.eval()
            with torch.no_grad():
                self.temperature = fit_temperature(self.model(xv), validation[1])
        self.history = {"epochs": epochs, "best_mean_language_f1": best_mean, "rollbacks": rollbacks,
                        "temperature": self.temperature, "rows_per_s": len(x) * epochs / (
                            time.perf_counter() - start)}
        return self.history

    def predict_proba(self, x: np.ndarray, langs: np.ndarray | None = None) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(x.astype(np.float32))) / self.temperature, 1).numpy()

    def mc_dropout_proba(self, x: np.ndarray, samples: int, langs: np.ndarray | None = None) -> np.ndarray:
        """(samples, rows, classes) probabilities with dropout on."""
        self.model.train()
        xt = torch.from_numpy(x.astype(np.float32))
        with torch.no_grad():
            return np.stack([torch.softmax(self.model(xt) / self.temperature, 1).numpy() for _ in range(samples)])


    def state(self) -> dict:
        return {"head": self.model.state_dict(), "dim": self.dim, "temperature": self.temperature}


def fit_temperature(logits: torch.Tensor, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of held-out labels."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=50)
    target = torch.from_numpy(y.astype(np.int64))
    logits = logits.detach().float().cpu()

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


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
    """Modes `finetune` and `lora`: the mean-pooled encoder + a linear head, trained end to end.

    finetune: layers above `freeze_layers` train, with layer-wise learning-rate decay (the top layer at
    `encoder_lr`, each lower one × `layer_lr_decay`). lora: the encoder stays frozen and LoRA adapters
    on `lora_targets` learn; with `adapter_per: language` each language with `adapter_min_rows` labels
    gets its own adapter stacked on the shared one (its batches train both; other languages, and
    languages never seen, use the shared one). Both: gradient accumulation, a compute cap (steps /
    seconds), bf16 or fp16 with loss scaling on a GPU, the per-language best-checkpoint rule of the head
    student, and temperature scaling.
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
        self.encoder = AutoModel.from_pretrained(path)
        if config.mode == "lora":
            from peft import get_peft_model

            self.encoder = get_peft_model(self.encoder, self._lora_config(), adapter_name="shared")
        else:
            self._freeze()
        self.encoder.to(self.device)
        self.head = nn.Linear(self.encoder.config.hidden_size, classes).to(self.device)
        self.languages: list[str] = []  # languages with an adapter of their own
        self.temperature = 1.0
        self.history: dict = {}

    def _lora_config(self):
        from peft import LoraConfig

        c = self.config
        return LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, target_modules=c.lora_targets,
                          lora_dropout=c.dropout)

    def _freeze(self) -> None:
        frozen = [self.encoder.embeddings, *self.encoder.encoder.layer[: self.config.freeze_layers]]
        for module in frozen:
            module.requires_grad_(False)

    def add_language_adapters(self, languages: list[str]) -> None:
        for lang in sorted(set(languages) - set(self.languages)):
            self.encoder.add_adapter(lang, self._lora_config())
            self.languages.append(lang)
        self.encoder.to(self.device)

    def _route(self, lang: str | None) -> None:
        """Activate the shared adapter, and `lang`'s own when it has one."""
        if self.config.mode == "lora":
            self.encoder.base_model.set_adapter(["shared", lang] if lang in self.languages else ["shared"])

    def parameter_groups(self) -> list[dict]:
        groups = [{"params": list(self.head.parameters()), "lr": self.config.lr, "name": "head"}]
        if self.config.mode == "lora":
            adapters = [p for name, p in self.encoder.named_parameters() if "lora_" in name]
            return [*groups, {"params": adapters, "lr": self.config.adapter_lr, "name": "adapters"}]
        layers = self.encoder.encoder.layer
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

    def _logits(self, texts: list[str], lang: str | None = None) -> torch.Tensor:
        self._route(lang)
        batch = self.tokenizer([self.prefix + t for t in texts], padding=True, truncation=True, max_length=256,
                               return_tensors="pt").to(self.device)
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head(((hidden * mask).sum(1) / mask.sum(1)).float())

    def _groups(self, count: int, langs: np.ndarray | None) -> dict[str | None, np.ndarray]:
        """Row indices by the language adapter that serves them (None: the shared one alone)."""
        if not self.languages or langs is None:
            return {None: np.arange(count)}
        key = np.array([lang if lang in self.languages else None for lang in langs], dtype=object)
        return {k: np.flatnonzero(key == k) for k in dict.fromkeys(key.tolist())}

    def _batches(self, langs: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, str | None]]:
        """One epoch of batches; each batch holds one adapter's rows, so it can route them."""
        size = self.config.batch_size
        batches = [(rows[i:i + size], lang) for lang, rows in self._groups(len(langs), langs).items()
                   for rows in [rng.permutation(rows)] for i in range(0, len(rows), size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _trained_state(self) -> dict:
        encoder = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()
                   if self.config.mode != "lora" or "lora_" in k}
        return {"encoder": encoder, "head": copy.deepcopy(self.head.state_dict())}

    def _load_trained_state(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"], strict=self.config.mode != "lora")
        self.head.load_state_dict(state["head"])

    def fit(self, texts: list[str], y: np.ndarray, langs: np.ndarray, validation: tuple | None = None) -> dict:
        c = self.config
        if c.mode == "lora" and c.adapter_per == "language":
            counts = {lang: int(np.sum(langs == lang)) for lang in np.unique(langs)}
            self.add_language_adapters([lang for lang, n in counts.items() if n >= c.adapter_min_rows])
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
            self.encoder.train()
            for batch_number, (rows, lang) in enumerate(self._batches(langs, rng)):
                with autocast:
                    loss = nn.functional.cross_entropy(self._logits([texts[i] for i in rows], lang), target[rows])
                losses.append(float(loss.detach()))
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
                predicted = self.predict_proba(validation[0], validation[2]).argmax(axis=1)
                scores = language_f1(validation[1], predicted, validation[2], self.classes)
                if is_better(scores, best_scores, best_mean, c.max_language_drop):
                    best_state, best_scores = self._trained_state(), scores
                    best_mean = float(np.mean(list(scores.values())))
            if capped():
                break
        if best_state is not None:
            self._load_trained_state(best_state)
        if validation is not None and c.calibrate:
            self.temperature = fit_temperature(self._all_logits(validation[0], validation[2]), validation[1])
        seconds = time.perf_counter() - start
        trainable = sum(p.numel() for group in self.parameter_groups() for p in group["params"])
        self.history = {"steps": steps, "examples": seen, "examples_per_s": seen / seconds, "seconds": seconds,
                        "first_loss": losses[0], "last_loss": losses[-1], "best_mean_language_f1": best_mean,
                        "temperature": self.temperature, "trainable_parameters": trainable,
                        "language_adapters": list(self.languages), "device": self.device}
        return self.history

    def _all_logits(self, texts: list[str], langs: np.ndarray | None = None) -> torch.Tensor:
        """Logits of every text in input order, each chunk routed through its language's adapters."""
        autocast, _ = self._autocast()
        logits = torch.empty(len(texts), self.classes)
        with torch.no_grad(), autocast:
            for lang, rows in self._groups(len(texts), langs).items():
                for first in range(0, len(rows), 64):
                    chunk = rows[first:first + 64]
                    logits[torch.from_numpy(chunk)] = self._logits([texts[i] for i in chunk], lang).float().cpu()
        return logits

    def predict_proba(self, texts: list[str], langs: np.ndarray | None = None) -> np.ndarray:
        self.encoder.eval()
        return torch.softmax(self._all_logits(texts, langs) / self.temperature, 1).numpy()

    def mc_dropout_proba(self, texts: list[str], samples: int, langs: np.ndarray | None = None) -> np.ndarray:
        """(samples, rows, classes) probabilities with dropout on (BALD)."""
        self.encoder.train()
        return np.stack([torch.softmax(self._all_logits(texts, langs) / self.temperature, 1).numpy()
                         for _ in range(samples)])

    def state(self) -> dict:
        return {**self._trained_state(), "languages": list(self.languages), "temperature": self.temperature}


def load_student(saved: dict, classes: int) -> HeadStudent | EncoderStudent:
    """A student back from `state()` (with its config under "config")."""
    config = StudentConfig(**saved["config"])
    if config.mode == "head":
        student = HeadStudent(saved["dim"], classes, config)
        student.model.load_state_dict(saved["head"])
    else:
        student = EncoderStudent(classes, config)
        student.add_language_adapters(saved["languages"])
        student._load_trained_state(saved)
    student.temperature = saved["temperature"]
    return student
