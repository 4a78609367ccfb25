"""Errors as a person sees them: UserError (shown as it is) and the messages every other
error becomes (no traceback, no server path)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

import explainers
import models

from . import queue_policy

log = logging.getLogger("app")
MODEL_NOT_AVAILABLE = (
    "This model's weights are not installed on this server and cannot be downloaded now. Please choose another model."
)


class UserError(ValueError):
    """A problem with the user's input, worded for a person (no server paths, no internals)."""


def friendly_errors(action: str) -> Callable:
    """Decorator: turn errors into gr.Error messages a person understands (never a traceback,
    never a server path)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 - every error becomes a message
                raise as_message(err, action) from None

        return inner

    return wrap


def as_message(err: Exception, action: str) -> gr.Error:
    """The gr.Error a person sees for ``err`` raised while trying to ``action``."""
    title = f"Could not {action}"
    if isinstance(err, queue_policy.ClientGone):
        log.info("stopped %s: the client has gone", action)
        return gr.Error("Cancelled.", title=f"Did not {action}", print_exception=False)
    if isinstance(err, models.ModelNotAvailableError):  # its text names the server's cache
        log.warning("model not available: %s", err)
        return gr.Error(MODEL_NOT_AVAILABLE, title=title, print_exception=False)
    if isinstance(err, (UserError, models.ModelError, explainers.ExplainerError)):
        return gr.Error(str(err), title=title, print_exception=False)
    if isinstance(err, MemoryError):
        return gr.Error(
            "The server ran out of memory. Try fewer classes or methods, or a smaller model.",
            title=title,
            print_exception=False,
        )
    log.error("unexpected error while trying to %s", action, exc_info=err)
    return gr.Error(
        "Something unexpected went wrong on the server; the details are in its log. "
        "Please try again or change the settings.",
        title=title,
        print_exception=False,
    )
