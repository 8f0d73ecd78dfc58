"""One pydantic model that validates every engine argument at construction."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ckptcore.errors import ConfigError
from ckptcore.modes import MODES
from ckptcore.schedule import validate_save_freq
from ckptcore.template import FilepathTemplate

__all__ = ["CheckpointConfig"]


def _number(name: str, value: Any, *, minimum: float | None = None, strict_min: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # NumPy scalars and the like convert; strings, lists and None do not.
        if isinstance(value, (str, bytes, list, tuple, dict)) or value is None or not hasattr(value, "__float__"):
            raise ValueError(f"got {value!r} ({type(value).__name__}); allowed: a number")
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:  # a NumPy array of several values, say
            raise ValueError(f"got {value!r} ({type(value).__name__}); allowed: a single number") from exc
    try:
        value = float(value)
    except OverflowError as exc:  # an int too large for a float (10**400)
        raise ValueError(f"got an int of about {int(int(value).bit_length() * 0.30103) + 1} digits, too "
                         "large for a float; allowed: a number a float can hold") from exc
    if math.isnan(value):
        raise ValueError(f"got {value!r}; allowed: a number, not NaN")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        op = ">" if strict_min else ">="
        raise ValueError(f"got {value!r}; allowed: a number {op} {minimum:g}")
    return float(value)


def _count(value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"got {value!r} ({type(value).__name__}); allowed: an int >= {minimum}")
    return value


class CheckpointConfig(BaseModel):
    """Every argument of :class:`ckptcore.Checkpointer`, validated.

    Construct it with keyword arguments; :meth:`build` turns pydantic's errors into one
    :class:`~ckptcore.errors.ConfigError` naming each bad argument, what was given and what is
    allowed.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    filepath: str
    monitor: str = "val_loss"
    verbose: int = 0
    save_best_only: bool = False
    mode: str = "auto"
    mode_hint: Optional[str] = None
    save_freq: Union[str, int] = "epoch"
    every_n_epochs: int = 1
    every_seconds: Optional[float] = None
    initial_value_threshold: Optional[float] = None
    min_delta: float = 0.0
    keep_last: Optional[int] = None
    keep_best: Optional[int] = None
    keep_every_n_epochs: Optional[int] = None
    async_save: bool = False
    max_pending: int = 1
    backends: tuple[Any, ...] = Field(default=())
    storage_options: dict[str, Any] = Field(default_factory=dict)
    resume: Union[bool, str] = False
    save_on_preemption: bool = False
    on_save_error: str = "warn"
    retries: int = 3
    retry_backoff: float = 0.5
    storage_timeout: Union[float, str, None] = "auto"
    is_chief: Optional[bool] = None

    @field_validator("filepath", mode="before")
    @classmethod
    def _filepath(cls, value: Any) -> str:
        if hasattr(value, "__fspath__"):
            value = str(value.__fspath__())
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"got {value!r}; allowed: a non-empty path or URL string")
        FilepathTemplate(value)  # raises TemplateError (a ValueError) with its own message
        return value

    @field_validator("monitor", mode="before")
    @classmethod
    def _monitor(cls, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"got {value!r}; allowed: a non-empty metric name such as 'val_loss'")
        return value

    @field_validator("verbose", mode="before")
    @classmethod
    def _verbose(cls, value: Any) -> int:
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int) or value < 0:
            raise ValueError(
                f"got {value!r} ({type(value).__name__}); allowed: 0 (silent) or an int >= 1 (messages)"
            )
        return value

    @field_validator("is_chief", mode="before")
    @classmethod
    def _is_chief(cls, value: Any) -> Optional[bool]:
        if value is not None and not isinstance(value, bool):
            raise ValueError(
                f"got {value!r} ({type(value).__name__}); allowed: True (this process commits), "
                "False (another worker does) or None (detect it: see ckptcore.distributed)"
            )
        return value

    @field_validator("save_best_only", "async_save", "save_on_preemption", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"got {value!r} ({type(value).__name__}); allowed: True or False")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str:
        if value not in MODES:
            raise ValueError(f"got {value!r}; allowed: 'auto', 'min', 'max'")
        return value

    @field_validator("mode_hint", mode="before")
    @classmethod
    def _mode_hint(cls, value: Any) -> Optional[str]:
        if value not in (None, "min", "max"):
            raise ValueError(f"got {value!r}; allowed: 'min', 'max' or None")
        return value

    @field_validator("save_freq", mode="before")
    @classmethod
    def _save_freq(cls, value: Any) -> Union[str, int]:
        try:
            return validate_save_freq(value)
        except ConfigError as exc:
            raise ValueError(str(exc).split(": ", 1)[1]) from exc

    @field_validator("every_n_epochs", "max_pending", mode="before")
    @classmethod
    def _positive_int(cls, value: Any) -> int:
        return _count(value)

    @field_validator("keep_last", "keep_best", "keep_every_n_epochs", mode="before")
    @classmethod
    def _keep(cls, value: Any) -> Optional[int]:
        return None if value is None else _count(value)

    @field_validator("every_seconds", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Optional[float]:
        return None if value is None else _number("every_seconds", value, minimum=0, strict_min=True)

    @field_validator("initial_value_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Optional[float]:
        return None if value is None else _number("initial_value_threshold", value)

    @field_validator("on_save_error", mode="before")
    @classmethod
    def _on_save_error(cls, value: Any) -> str:
        if not isinstance(value, str) or value not in ("warn", "raise"):
            raise ValueError(f"got {value!r}; allowed: 'warn' (report, training goes on) or 'raise'")
        return value

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> int:
        return _count(value, minimum=0)

    @field_validator("retry_backoff", mode="before")
    @classmethod
    def _retry_backoff(cls, value: Any) -> float:
        value = _number("retry_backoff", value, minimum=0)
        if math.isinf(value):
            raise ValueError(f"got {value!r}; allowed: a finite number of seconds >= 0")
        return value

    @field_validator("storage_timeout", mode="before")
    @classmethod
    def _storage_timeout(cls, value: Any) -> Union[float, str, None]:
        if value is None or value == "auto":
            return value
        allowed = "allowed: 'auto', a finite number of seconds > 0, or None (no deadline)"
        if isinstance(value, bool):
            raise ValueError(f"got {value!r} (bool); {allowed}")
        try:
            seconds = _number("storage_timeout", value, minimum=0, strict_min=True)
        except ValueError as exc:
            raise ValueError(f"{str(exc).split('; allowed')[0]}; {allowed}") from exc
        if math.isinf(seconds):
            raise ValueError(f"got {value!r}; {allowed}")
        return seconds

    @field_validator("min_delta", mode="before")
    @classmethod
    def _min_delta(cls, value: Any) -> float:
        return _number("min_delta", value, minimum=0)

    @field_validator("backends", mode="before")
    @classmethod
    def _backends(cls, value: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            value = [value]
        return tuple(value)

    @field_validator("resume", mode="before")
    @classmethod
    def _resume(cls, value: Any) -> Union[bool, str]:
        if hasattr(value, "__fspath__"):
            value = str(value.__fspath__())
        if not isinstance(value, (bool, str)) or value == "":
            raise ValueError(f"got {value!r}; allowed: True, False, 'state' or a manifest path/URL")
        return value

    @classmethod
    def build(cls, **kwargs: Any) -> "CheckpointConfig":
        """Validate ``kwargs``.

        Raises:
            ConfigError: One message naming every bad argument.
        """
        try:
            config = cls(**kwargs)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from exc
        if config.every_n_epochs != 1 and config.save_freq != "epoch":
            raise ConfigError(
                f"every_n_epochs: got {config.every_n_epochs!r} with save_freq={config.save_freq!r}; "
                "allowed: every_n_epochs with save_freq='epoch' (an int save_freq counts batches)"
            )
        return config


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(CheckpointConfig.model_fields))
            msg = f"unknown argument; allowed: {allowed}"
        elif not msg.startswith("got") and not msg.startswith("filepath"):
            msg = f"got {err.get('input')!r}; {msg}"
        lines.append(msg if msg.startswith("filepath:") else f"{field}: {msg}")
    return "; ".join(lines)
