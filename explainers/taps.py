"""Temporary, per-thread instrumentation of a model: layer taps, guided ReLUs, eval mode.

Everything here is a context manager that leaves the model exactly as it found it (no hook, same
modules, same train/eval flags), also when the body raises. Hooks act only for the thread that
installed them, so two threads can explain with one model object at the same time.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import ExplainerError

RELU_FAMILY = (nn.ReLU, nn.ReLU6)


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The sub-module at dotted path `name`, or an ExplainerError listing close names."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    close = [n for n in modules if n and (name in n or n in name)][:8]
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ExplainerError(f"The model has no layer named {name!r}.{hint}")


_eval_lock = threading.Lock()
_eval_users: dict[int, tuple[int, dict[str, bool]]] = {}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Runs the body with every module in eval mode, restoring each module's own flag afterwards.

    Reference counted per model, so that concurrent explanations agree on the mode and only the
    last one out restores it.
    """
    key = id(model)
    with _eval_lock:
        users, saved = _eval_users.get(key, (0, {}))
        if users == 0:
            saved = {n: m.training for n, m in model.named_modules()}
            model.eval()
        _eval_users[key] = (users + 1, saved)
    try:
        yield
    finally:
        with _eval_lock:
            users, saved = _eval_users[key]
            if users == 1:
                del _eval_users[key]
                for n, m in model.named_modules():
                    m.training = saved.get(n, m.training)
            else:
                _eval_users[key] = (users - 1, saved)


class LayerTap:
    """Captures one layer's output during the current thread's forward passes.

    mode "detach": the output becomes a leaf that requires grad and gradients are recorded only from
    there on (the forward runs under no_grad until the layer): the cheapest way to get d(score)/d(A).
    mode "keep": the output stays in the full graph (for methods that also need input gradients).
    In both modes the rest of the network receives a copy, so in-place operations after the layer
    cannot change the captured activations.
    ``replace``, when set, maps the captured output to what the rest of the network receives
    (Ablation-CAM feeds a batch of ablated copies this way).
    """

    def __init__(self, module: nn.Module, name: str, mode: str = "keep",
                 replace: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.module, self.name, self.mode, self.replace = module, name, mode, replace
        self.output: torch.Tensor | None = None
        self.calls = 0
        self._thread = threading.get_ident()

    def _hook(self, module: nn.Module, inputs: tuple, output: object) -> object:
        if threading.get_ident() != self._thread:
            return None
        self.calls += 1
        if self.calls > 1:
            raise ExplainerError(f"Layer {self.name!r} runs more than once in a forward pass, so its "
                                 "activations are ambiguous; choose another layer.")
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ExplainerError(f"Layer {self.name!r} does not output a spatial feature map "
                                 "[B, C, H, W]; choose a convolutional layer.")
        if self.mode == "detach":
            torch.set_grad_enabled(True)
            output = output.detach().requires_grad_(True)
        self.output = output
        return self.replace(output) if self.replace else output.clone()

    @contextmanager
    def attached(self) -> Iterator["LayerTap"]:
        """Installs the hook for the body; in "detach" mode the body's forward starts under no_grad."""
        handle = self.module.register_forward_hook(self._hook)
        grad_before = torch.is_grad_enabled()
        try:
            if self.mode == "detach":
                torch.set_grad_enabled(False)
            yield self
        finally:
            torch.set_grad_enabled(grad_before)
            handle.remove()

    def reset(self) -> None:
        """Forgets the last capture before another forward pass."""
        self.output, self.calls = None, 0

    def activations(self) -> torch.Tensor:
        """The captured output, or an error when the forward pass never reached the layer."""
        if self.output is None:
            raise ExplainerError(f"Layer {self.name!r} was not used in the forward pass.")
        return self.output


class GuidedSwitch:
    """Whether the guided ReLU gates of one explanation are active during a backward pass."""

    def __init__(self) -> None:
        self.on = False

    @contextmanager
    def active(self) -> Iterator[None]:
        """Gates are on for the body (a backward pass) only."""
        self.on = True
        try:
            yield
        finally:
            self.on = False


@contextmanager
def guided_relus(model: nn.Module, switch: GuidedSwitch) -> Iterator[int]:
    """Gates the gradient arriving at every ReLU / ReLU6 output (in-place ones too) during this
    thread's forward passes: while the switch is on, only positive gradients pass, and the ReLU's
    own backward then masks by its positive input. That is guided backpropagation's rule,
    grad_in = [x > 0] [grad_out > 0] grad_out (Springenberg et al.).

    Yields the number of gated modules; zero means guided backprop would equal the plain gradient.
    """
    thread = threading.get_ident()

    def keep_positive(grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0) if switch.on else grad

    def gate(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if threading.get_ident() == thread and output.requires_grad:
            output.register_hook(keep_positive)

    handles = [m.register_forward_hook(gate) for m in model.modules() if isinstance(m, RELU_FAMILY)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def layer_tap(model: nn.Module, name: str, mode: str = "keep") -> LayerTap:
    """A tap on the layer `name` of `model`: the one way the engine and the methods build taps.

    The captured activations are a spatial grid [B, C, h, w] whatever the layer outputs.
    """
    return LayerTap(find_module(model, name), name, mode)
