"""Temporary, per-thread instrumentation of a model: layer taps, guided ReLUs, eval mode.

Everything here is a context manager that leaves the model exactly as it found it (no hook, same
modules, same train/eval flags), also when the body raises. Hooks act only for the thread that
installed them, so two threads can explain with one model object at the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from models.tokens import GRID, LayoutRule, TokenLayout, from_grid, layout_of, to_grid

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
_eval_users: dict[int, tuple[int, list[nn.Module]]] = {}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Runs the body with every module in eval mode, restoring each module's own flag afterwards.

    Reference counted per model, so that concurrent explanations agree on the mode and only the
    last one out restores it.
    """
    key = id(model)
    with _eval_lock:
        users, training = _eval_users.get(key, (0, []))
        if users == 0:
            training = [m for m in model.modules() if m.training]  # usually none: nothing to switch
            if training:
                model.eval()
        _eval_users[key] = (users + 1, training)
    try:
        yield
    finally:
        with _eval_lock:
            users, training = _eval_users[key]
            if users == 1:
                del _eval_users[key]
                for m in training:
                    m.training = True
            else:
                _eval_users[key] = (users - 1, training)


class LayerTap:
    """Captures one layer's output, as a grid [B, C, h, w], during the current thread's forward passes.

    The output may be a grid already, tokens [B, P + h*w, C] or channels-last [B, h, w, C]
    (vision transformers; `models.tokens` decides the layout for the current input size):
    the tap captures the grid and hands the rest of the network the layer output rebuilt from it,
    prefix tokens kept, so gradients with respect to the grid are exact.
    mode "detach": the grid becomes a leaf that requires grad and gradients are recorded only from
    there on (the forward runs under no_grad until the layer): the cheapest way to get d(score)/d(A).
    mode "keep": the grid stays in the full graph (for methods that also need input gradients).
    In both modes the rest of the network receives a copy, so in-place operations after the layer
    cannot change the captured activations.
    ``replace``, when set, maps the captured grid to the grid (or a batch of grids of this image)
    that the rest of the network receives (Ablation-CAM feeds a batch of ablated copies this way).
    ``root``: the whole model, whose input size and patch grid fix a token layer's grid;
    ``layout``: an explicit layout (or rule) for this layer, instead of `models.tokens.layout_of`.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        mode: str = "keep",
        replace: Callable[[torch.Tensor], torch.Tensor] | None = None,
        root: nn.Module | None = None,
        layout: TokenLayout | LayoutRule | None = None,
    ) -> None:
        self.module, self.name, self.mode, self.replace = module, name, mode, replace
        self.root = root if root is not None else module
        self.explicit_layout = layout
        self.output: torch.Tensor | None = None
        self.layout: TokenLayout | None = None  # the layout of the last capture
        self.input_hw: tuple[int, int] | None = None
        self.calls = 0
        self._thread = threading.get_ident()

    def _record_input(self, module: nn.Module, args: tuple) -> None:
        if threading.get_ident() == self._thread and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            self.input_hw = (int(args[0].shape[-2]), int(args[0].shape[-1]))

    def _layout_of(self, output: torch.Tensor) -> TokenLayout | None:
        explicit = self.explicit_layout
        if isinstance(explicit, TokenLayout):
            return explicit
        if explicit is not None:
            return explicit(self.input_hw, tuple(output.shape))
        return layout_of(self.root, self.name, output.shape, self.input_hw)

    def _hook(self, module: nn.Module, inputs: tuple, output: object) -> object:
        if threading.get_ident() != self._thread:
            return None
        self.calls += 1
        if self.calls > 1:
            raise ExplainerError(
                f"Layer {self.name!r} runs more than once in a forward pass, so its "
                "activations are ambiguous; choose another layer."
            )
        layout = self._layout_of(output) if isinstance(output, torch.Tensor) else None
        if layout is None or not isinstance(output, torch.Tensor):
            raise ExplainerError(
                f"Layer {self.name!r} outputs neither a spatial feature map "
                "[B, C, H, W] nor tokens [B, N, C]; choose another layer."
            )
        try:
            grid, prefix = to_grid(output, layout)
        except ValueError as error:
            raise ExplainerError(
                f"Layer {self.name!r}: {error} Declare its layout with models.tokens.declare_layout."
            ) from error
        if self.mode == "detach":
            torch.set_grad_enabled(True)
            grid = grid.detach()
            grid = (grid if layout.kind == GRID else grid.contiguous()).requires_grad_(True)
            prefix = prefix.detach() if prefix is not None else None
        self.output, self.layout = grid, layout
        passed = self.replace(grid) if self.replace else grid.clone()
        return from_grid(passed, layout, prefix)

    @contextmanager
    def attached(self) -> Iterator[LayerTap]:
        """Installs the hooks for the body; in "detach" mode the body's forward starts under no_grad."""
        handles = [
            self.root.register_forward_pre_hook(self._record_input),
            self.module.register_forward_hook(self._hook),
        ]
        grad_before = torch.is_grad_enabled()
        try:
            if self.mode == "detach":
                torch.set_grad_enabled(False)
            yield self
        finally:
            torch.set_grad_enabled(grad_before)
            for handle in handles:
                handle.remove()

    def reset(self) -> None:
        """Forgets the last capture before another forward pass."""
        self.output, self.calls = None, 0

    def activations(self) -> torch.Tensor:
        """The captured grid [B, C, h, w], or an error when the forward pass never reached the layer."""
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


def layer_tap(
    model: nn.Module, name: str, mode: str = "keep", layout: TokenLayout | LayoutRule | None = None
) -> LayerTap:
    """A tap on the layer `name` of `model`: the one way the engine and the methods build taps.

    The captured activations are a spatial grid [B, C, h, w] whatever the layer outputs: tokens and
    channels-last outputs are converted (see `models.tokens`); `layout` overrides the rules
    (as does `models.tokens.declare_layout` for every tap on that model).
    """
    return LayerTap(find_module(model, name), name, mode, root=model, layout=layout)
