"""A small PyTorch Lightning GRU: one-week lookback, direct multi-step quantile output.

Why day-chunks: a week of half-hourly load is 336 steps; feeding it to the GRU as 7 steps of
one-day vectors keeps the recurrent part tiny (CPU-trainable in seconds here) while every
day-vector still shows the full intraday shape. The head sees the GRU state, the calendar of
the target day(s) and optional future exogenous values, and emits ``horizon x 3`` quantiles
(p10/p50/p90) trained with the pinball loss.

Scaling: inputs are the log load minus the lookback mean (shapes, not the seasonal level);
the target is the log-correction to the level-adjusted weekly naive (see ``_window``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as L
import torch
from torch import nn

from models.forecast.base import QUANTILES, Forecaster
from models.forecast.data import ForecastInputError, PreparedSeries
from models.forecast.features import Calendar

# a tiny network: one intra-op thread is fastest; on this shared 2-core box two threads
# spin against each other (measured 0.03 s vs 0.22 s per training step)
torch.set_num_threads(1)


class GRUForecaster(Forecaster):
    """GRU over day-chunks of a one-week lookback; see the module docstring."""

    name = "gru"
    cell = "gru"

    def __init__(
        self,
        horizon: pd.Timedelta = pd.Timedelta(days=1),
        *,
        exog: Sequence[str] = (),
        lookback: pd.Timedelta = pd.Timedelta(days=7),
        hidden: int = 64,
        epochs: int = 40,
        batch_size: int = 64,
        lr: float = 3e-3,
        stride: int = 1,
        tz: str,
        country: str = "US",
        subdiv: str | None = None,
        seed: int = 0,
        level_steps: int = 2,
        **kw,
    ):
        super().__init__(**kw)
        self.horizon = pd.Timedelta(horizon)
        if self.horizon > pd.Timedelta(days=7):
            raise ValueError(f"horizon {horizon} exceeds the one-week baseline the GRU corrects")
        self.level_steps = level_steps
        self.exog = tuple(exog)
        self.lookback = pd.Timedelta(lookback)
        if self.lookback % pd.Timedelta(days=1) != pd.Timedelta(0):
            raise ValueError(f"lookback must be whole days, got {lookback}")
        self.hidden, self.epochs, self.batch_size, self.lr, self.stride = hidden, epochs, batch_size, lr, stride
        self.calendar = Calendar(tz=tz, country=country, subdiv=subdiv)
        self.seed = seed
        self.min_history = max(self.lookback, pd.Timedelta(days=7)) + self.horizon + pd.Timedelta(days=7)

    def params(self) -> dict:
        return {
            "model": self.name,
            "horizon": str(self.horizon),
            "lookback": str(self.lookback),
            "hidden": self.hidden,
            "epochs": self.epochs,
            "lr": self.lr,
            "exog": list(self.exog),
        }

    # -- data ----------------------------------------------------------------------
    def _arrays(self, y: pd.Series, exog: pd.DataFrame, future: pd.DataFrame | None = None):
        """Log-load, calendar and exog arrays over history (+ future rows, if given)."""
        idx = y.index if future is None else y.index.append(future.index)
        x = np.log(y.to_numpy())
        cal = self.calendar.transform(pd.DataFrame(index=idx), "y")
        local = idx.tz_convert(self.calendar.tz)
        dow = local.dayofweek.to_numpy()
        calf = np.column_stack([np.eye(7)[dow], cal["holiday"].to_numpy()]).astype(np.float32)  # (n, 8)
        ex = exog if future is None else pd.concat([exog, future[list(self.exog)]])
        exf = ((ex[list(self.exog)].to_numpy() - self._ex_mu) / self._ex_sd).astype(np.float32) if self.exog else None
        return x, calf, exf

    def _window(self, x, calf, exf, o: int):
        """Inputs at origin ``o`` and the baseline the network corrects.

        Baseline: the same steps one week earlier shifted by the latest week-on-week change
        (mean of the last ``level_steps``) -- the level-adjusted weekly naive. The GRU learns the
        correction to it, so an undertrained or unsure network degrades to a strong baseline
        instead of to the mean.
        """
        L, H, P = self._L, self._H, self._P
        W = 7 * P
        past = x[o - L : o]
        mu = past.mean()
        seq = ((past - mu) / self._sd).reshape(L // P, P)
        day_cal = calf[o - L : o : P]  # calendar of each lookback day start
        seq = np.concatenate([seq, day_cal], axis=1)
        head = [calf[o : o + H : P].ravel(), calf[o]]
        if exf is not None:
            head.append(exf[o : o + H].ravel())
        k = self.level_steps
        delta = np.mean(x[o - k : o] - x[o - k - W : o - W])
        base = x[o - W : o - W + H] + delta
        return seq.astype(np.float32), np.concatenate(head).astype(np.float32), base

    def _fit(self, s: PreparedSeries) -> None:
        if (s.y <= 0).any():
            raise ForecastInputError(f"{self.name}: needs a positive series (log scale)")
        self._P = s.steps_per_day
        self._L = s.steps(self.lookback)
        self._H = s.steps(self.horizon)
        x_all = np.log(s.y.to_numpy())
        self._sd = float(np.std(x_all[self._P :] - x_all[: -self._P])) or 1.0  # day-on-day log change
        if self.exog:
            self._ex_mu = s.exog[list(self.exog)].mean().to_numpy()
            self._ex_sd = s.exog[list(self.exog)].std().replace(0, 1).to_numpy()
        x, calf, exf = self._arrays(s.y, s.exog)
        seqs, heads, ys = [], [], []
        for o in range(max(self._L, 7 * self._P + self.level_steps), len(x) - self._H + 1, self.stride):
            sq, hd, base = self._window(x, calf, exf, o)
            seqs.append(sq)
            heads.append(hd)
            ys.append(((x[o : o + self._H] - base) / self._sd).astype(np.float32))
        if len(seqs) < 20:
            raise ForecastInputError(f"{self.name}: only {len(seqs)} training windows; need more history")
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)  # no GPU/TPU banners per fit
        L.seed_everything(self.seed, workers=False, verbose=False)
        ds = torch.utils.data.TensorDataset(
            torch.tensor(np.stack(seqs)), torch.tensor(np.stack(heads)), torch.tensor(np.stack(ys))
        )
        dl = torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=True)
        self.net = _Net(seqs[0].shape[1], heads[0].shape[0], self._H, self.hidden, self.lr, self.cell)
        trainer = L.Trainer(
            max_epochs=self.epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
        )
        trainer.fit(self.net, dl)
        self.net.eval()
        self.train_loss = float(trainer.callback_metrics.get("train_loss", float("nan")))

    def update(self, history) -> GRUForecaster:
        """Keep the weights; the next forecast reads the newest week of ``history``."""
        if not hasattr(self, "net"):
            return self.fit(history)
        self.series = self._prepare(history)
        return self

    def _predict(self, steps: int, future_exog: pd.DataFrame) -> np.ndarray:
        s = self.series
        if steps > self._H:
            raise ForecastInputError(f"{self.name} was trained for {self._H} steps; asked for {steps}")
        pad = future_exog.reindex(pd.date_range(future_exog.index[0], periods=self._H, freq=s.freq))
        pad = pad.ffill()
        tail = max(s.steps(self.lookback), 7 * self._P) + self.level_steps
        x, calf, exf = self._arrays(s.y.iloc[-tail:], s.exog.iloc[-tail:], pad)
        sq, hd, base = self._window(np.concatenate([x, np.zeros(self._H)]), calf, exf, tail)
        with torch.no_grad():
            out = self.net(torch.tensor(sq[None]), torch.tensor(hd[None]))[0].numpy()  # (H, 3)
        return np.exp(out[:steps] * self._sd + base[:steps, None])


class _Net(L.LightningModule):
    """GRU encoder over day-chunks + MLP head -> (horizon, 3) quantiles; pinball loss."""

    def __init__(self, n_in: int, n_head: int, horizon: int, hidden: int, lr: float, cell: str = "gru"):
        super().__init__()
        self.save_hyperparameters()
        self.cell = cell
        self.gru = (nn.LSTM if cell == "lstm" else nn.GRU)(n_in, hidden, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(hidden + n_head, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, horizon * len(QUANTILES))
        )
        self.register_buffer("q", torch.tensor(QUANTILES, dtype=torch.float32))
        self.horizon = horizon
        self.lr = lr

    def forward(self, seq, head):
        _, h = self.gru(seq)
        if getattr(self, "cell", "gru") == "lstm":
            h = h[0]  # (hidden state, cell state)
        z = torch.cat([h[-1], head], dim=1)
        return self.mlp(z).view(-1, self.horizon, len(QUANTILES))

    def training_step(self, batch, _):
        seq, head, y = batch
        pred = self(seq, head)
        diff = y.unsqueeze(-1) - pred
        loss = torch.maximum(self.q * diff, (self.q - 1) * diff).mean()
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class LSTMForecaster(GRUForecaster):
    """The same network and training with an LSTM encoder instead of the GRU (utilities ask for
    both; the LSTM has a separate cell state and ~4/3 the recurrent weights)."""

    name = "lstm"
    cell = "lstm"
