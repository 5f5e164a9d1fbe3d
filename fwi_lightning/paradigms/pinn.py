"""Physics-informed neural networks for one survey: coordinate networks for the wavefield and the velocity.

A wavefield network u(x, z, t) and, in ``inversion`` mode, a velocity network c(x, z)
are fit together to one shot of a `single_survey` data module (Rasht-Behesht et al.
2022, JGR: "Physics-informed neural networks (PINNs) for wave propagation and full
waveform inversions"). The loss holds, each term weighted (`weights`) and logged
unweighted as ``train/<term>``:

* ``pde``: the residual of the 2-D constant-density acoustic wave equation
  ``u_tt = c^2 (u_xx + u_zz)`` by automatic differentiation at collocation points drawn
  each step on the training device (`fwi_lightning.paradigms.collocation`), divided by
  ``(2 pi f_peak)^2`` so that each of its terms is of order one;
* ``initial``: the wavefield at two early times t1 < t2 against snapshots of the
  finite-difference `Simulator` (`Simulator.snapshots`). The PINN's time window starts
  at t1, after the source wavelet has ended, so no point source appears in the
  equation (the singularity Rasht-Behesht et al. sidestep the same way);
* ``data``: the wavefield at the receivers against the recorded traces inside the window
  (relative: divided by the traces' mean square);
* ``smoothness``: the mean squared velocity gradient (``inversion`` only; weight 0 by default);
* ``boundary``: the first-order absorbing (Engquist-Majda) condition ``u_t + c du/dn = 0``
  (n the outward normal) of the network's field on the four edges of the grid, divided by
  ``2 pi f_peak`` (weight 0 by default): the Simulator's absorbing layer lets no wave
  in, while a PINN with no boundary term can explain receiver data by waves that enter
  through the edges instead of by the velocity;
* ``prior``: the mean squared difference of the velocity and the initial model, on the
  [-1, 1] scale of the velocity range (``inversion`` only; weight 0 by default): a
  Tikhonov term that keeps the cells the data do not constrain at the initial model.

Modes: ``forward``: the velocity is known (the data module's true model, bilinearly
interpolated) and the wavefield is solved for; ``inversion``: the velocity is the
initial model (`fwi_lightning.paradigms.initial`) plus `velocity_scale_mps` times tanh of
the velocity network (whose last layer starts at zero), clipped to the velocity range,
held at the initial model for the first `velocity_warmup_steps` steps. The
initial-condition snapshots are simulated in the known model (forward) or in the
initial model (inversion): they are right when the wave has not reached the unknown
part of the model by t2, as in Rasht-Behesht et al.'s set-up.

The wavefield's form (`wavefield_form`, ``inversion`` only): ``total``: the network is the
wavefield; ``scattered``: the wavefield is the Simulator's in the initial model, u0 (one
snapshot per sample of the window, interpolated trilinearly), plus the network, which
starts at zero and learns the scattered field du = u - u0 alone. In the residual,
``u_tt = u0_tt + du_tt`` (u0_tt by central differences of the snapshots in time) and
``lap u = lap du + u0_tt / c0^2`` (u0 solves the wave equation in the initial model c0):
the background + scattered-field decomposition of Born modelling, here with the full
(non-linear) scattered field. The network then represents a small field that is zero at
the initial conditions instead of the whole wave train.

Units: physical (m, s, m/s) at the boundary. Inside, x, z and t are scaled to [-1, 1]
over the grid (cell centres 0 .. (N - 1) * spacing) and the window [t1, t_end], and the
wavefield is divided by the largest magnitude of the t1 snapshot.

Validation and test score the velocity grid like ``fwi`` (``losses``, default the
physics data misfit through the data's own operator) and, when the true model is known,
log ``val/wavefield_rel_l2``: the relative L2 difference of the PINN wavefield and the
Simulator's (in the true model) at t_end. At the end of fitting the run folder gets
``figures/wavefield.png`` (snapshots: PINN, Simulator, difference) and, like ``fwi``,
``final_velocity.npy`` and ``figures/final.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from fwi_lightning import plotting, registry
from fwi_lightning.errors import ConfigError
from fwi_lightning.networks.coordinate import CoordinateNetwork
from fwi_lightning.paradigms.collocation import CollocationSampler, SamplerName
from fwi_lightning.paradigms.base import OptimizerGroup
from fwi_lightning.paradigms.initial import initial_velocity
from fwi_lightning.paradigms.survey_fit import SurveyFit, model_errors
from fwi_lightning.physics import wavelets
from fwi_lightning.problem import Problem
from fwi_lightning.specs import LossesSpec, NetworkSpec

#: The loss terms and their default weights.
DEFAULT_WEIGHTS = {"pde": 1.0, "initial": 1.0, "data": 1.0, "boundary": 0.0, "smoothness": 0.0, "prior": 0.0}
DEFAULT_WAVEFIELD = {"name": "pinn_siren"}
DEFAULT_VELOCITY = {"name": "pinn_mlp", "width": 32, "depth": 3}
DEFAULT_PINN_OPTIMIZER = {"name": "adam", "lr": 1.0e-3}
#: The first snapshot comes this many peak periods after the wavelet's peak (its amplitude is then below 1e-3).
SOURCE_END_PERIODS = 1.0
#: The second snapshot comes this many peak periods after the first, by default.
SNAPSHOT_GAP_PERIODS = 0.25


class PINN(SurveyFit):
    """Physics-informed neural network: wavefield u(x, z, t) and velocity c(x, z) coordinate networks for one shot.

    Args:
        problem: survey and scaling (injected).
        mode: ``forward`` (velocity known: solve for the wavefield) or ``inversion``
            (velocity recovered from the receiver data).
        wavefield: the wavefield's coordinate network, default ``{name: pinn_siren}``.
        velocity_network: the velocity's coordinate network (inversion), default
            ``{name: pinn_mlp, width: 32, depth: 3}``.
        weights: weight of each loss term, ``{pde, initial, data, boundary, smoothness, prior}``;
            unset terms keep ``{pde: 1, initial: 1, data: 1, boundary: 0, smoothness: 0, prior: 0}``.
        wavefield_form: ``total`` or ``scattered`` (``inversion`` only; see the module docstring).
        sampler: collocation sampler, ``uniform``, ``sobol`` or ``adaptive``.
        collocation_points: PDE points per step.
        initial_points: grid points per snapshot per step (0: every grid point); also the
            ``boundary`` term's edge points per step (0: 1024).
        data_points: (time, receiver) samples per step (0: every sample in the window).
        initial_times_s: [t1, t2] in s of the two initial snapshots (rounded to samples);
            None: t1 one peak period after the wavelet's peak, t2 a quarter period later.
        end_time_s: end of the time window in s; None: the last sample of the record.
        shot: index of the shot whose wavefield is modelled.
        velocity_scale_mps: the largest update to the initial model, m/s: the update is this
            times tanh of the velocity network's output; None: half the velocity range.
        velocity_warmup_steps: steps during which the velocity stays the initial model
            (its network gets no gradient) while the wavefield learns it.
        velocity_lr_factor: the velocity network's learning rate is the optimiser's times this
            (a slow velocity keeps it from absorbing the young wavefield's errors).
        time_marching_steps: over this many first steps the collocation points' latest time
            grows linearly from the second snapshot to the window's end (the wavefield is
            learnt in the order the wave equation propagates it); 0: the whole window at once.
        adaptive_pool, adaptive_every: candidate points and refresh interval (steps) of
            the ``adaptive`` sampler.
        losses: what validation and test score the velocity grid with, default
            ``{physics: 1.0}`` (the data misfit through the finite-difference operator).
        optimizer: ``{name, **kwargs}``, default Adam lr 1e-3 over both networks.
        scheduler: ``{name, interval, monitor, **kwargs}`` or null.
        initial: the initial model of ``inversion`` (`fwi_lightning.paradigms.initial`).
        figure_every_n_steps: write a velocity figure every N iterations (0: none).

    Raises:
        ConfigError: an unknown weight name or a negative weight, a non-coordinate
            network, bad point counts, initial times or an end time outside the record
            or not increasing (a zero-duration window), a shot outside the survey, or
            ``forward`` without a known model. (A receiver outside the grid, the
            coordinate networks' domain, is refused by the `Survey` itself.)
    """

    #: The networks its network parameters take (the contract matrix pairs it with these alone).
    network_base = CoordinateNetwork

    def __init__(self, problem: Problem | dict, mode: Literal["forward", "inversion"] = "inversion",
                 wavefield: NetworkSpec = None, velocity_network: NetworkSpec = None,
                 weights: Optional[Mapping[str, float]] = None, wavefield_form: str = "total",
                 sampler: SamplerName = "sobol",
                 collocation_points: int = 2048, initial_points: int = 1024, data_points: int = 1024,
                 initial_times_s: Optional[Sequence[float]] = None, end_time_s: Optional[float] = None, shot: int = 0,
                 velocity_scale_mps: Optional[float] = None, velocity_warmup_steps: int = 0,
                 velocity_lr_factor: float = 1.0,
                 time_marching_steps: int = 0, adaptive_pool: int = 8192, adaptive_every: int = 50,
                 losses: LossesSpec = None, optimizer: Optional[dict] = None, scheduler: Optional[dict] = None,
                 initial: Optional[dict] = None, figure_every_n_steps: int = 0):
        super().__init__(problem, mode=mode, wavefield=wavefield or dict(DEFAULT_WAVEFIELD),
                         velocity_network=velocity_network or dict(DEFAULT_VELOCITY), weights=dict(weights or {}),
                         wavefield_form=wavefield_form, sampler=sampler, collocation_points=collocation_points,
                         initial_points=initial_points, data_points=data_points, initial_times_s=initial_times_s,
                         end_time_s=end_time_s, shot=shot,
                         velocity_scale_mps=velocity_scale_mps, velocity_warmup_steps=velocity_warmup_steps,
                         velocity_lr_factor=velocity_lr_factor,
                         time_marching_steps=time_marching_steps, adaptive_pool=adaptive_pool, adaptive_every=adaptive_every,
                         losses=losses, optimizer=optimizer or dict(DEFAULT_PINN_OPTIMIZER), scheduler=scheduler,
                         initial=initial, figure_every_n_steps=figure_every_n_steps)

    # -- building ---------------------------------------------------------------------

    def configure_models(self) -> None:
        """Check the settings, resolve the time window and build the coordinate networks and buffers."""
        super().configure_models()
        hp = self.hparams
        if hp["mode"] not in ("forward", "inversion"):
            raise ConfigError(f"unknown mode {hp['mode']!r}; choose forward or inversion", key="mode")
        if hp["sampler"] not in ("uniform", "sobol", "adaptive"):
            raise ConfigError(f"unknown sampler {hp['sampler']!r}; choose uniform, sobol or adaptive", key="sampler")
        self.weights = _checked_weights(hp["weights"])
        if hp["wavefield_form"] not in ("total", "scattered"):
            raise ConfigError(f"unknown wavefield form {hp['wavefield_form']!r}; choose total or scattered", key="wavefield_form")
        self.scattered = hp["wavefield_form"] == "scattered"
        if self.scattered and hp["mode"] != "inversion":
            raise ConfigError("the scattered wavefield form needs inversion mode (in forward mode the background would be "
                              "the answer)", key="wavefield_form")
        for name, low in (("collocation_points", 1), ("initial_points", 0), ("data_points", 0), ("adaptive_pool", 2),
                          ("adaptive_every", 1), ("velocity_warmup_steps", 0), ("time_marching_steps", 0)):
            value = hp[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"expected a whole number >= {low}, got {value!r}", key=name)
        survey = self.problem.survey
        if isinstance(hp["shot"], bool) or not isinstance(hp["shot"], int) or not 0 <= hp["shot"] < survey.n_shots:
            raise ConfigError(f"expected a shot index in 0..{survey.n_shots - 1}, got {hp['shot']!r}", key="shot")
        self.steps = time_window(self.problem, hp["initial_times_s"], hp["end_time_s"])
        if self.scattered and self.steps[0] < 2:  # (the end is at most nt - 1: snapshot nt exists)
            raise ConfigError("the scattered form differentiates the background in time: it needs a sample before t1; "
                              "give a later t1", key="initial_times_s")
        v_min, v_max = self.problem.velocity_range
        scale = hp["velocity_scale_mps"]
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ConfigError(f"expected a number > 0 in m/s, got {scale!r}", key="velocity_scale_mps")
        self.velocity_scale = float(scale) if scale is not None else (v_max - v_min) / 2.0
        factor = hp["velocity_lr_factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
            raise ConfigError(f"expected a number > 0, got {factor!r}", key="velocity_lr_factor")

        self.wavefield = _coordinate_network(hp["wavefield"], "wavefield", self.problem, 3)
        self.velocity_net = None
        if hp["mode"] == "inversion":
            self.velocity_net = _coordinate_network(hp["velocity_network"], "velocity_network", self.problem, 2)
            self.velocity_net.zero_output()
        nz, nx = self.problem.velocity_shape
        self.register_buffer("start", torch.full((1, 1, nz, nx), (v_min + v_max) / 2.0))
        self.register_buffer("snapshots", torch.zeros(2, nz, nx))  # at t1, t2, nondimensional (divided by amplitude)
        self.register_buffer("reference", torch.zeros(2, nz, nx))  # Simulator in the true model at t_mid, t_end, likewise
        self.register_buffer("amplitude", torch.tensor(1.0))
        self.register_buffer("has_reference", torch.tensor(False))
        samples = self.steps[-1] - self.steps[0] + 1 if self.scattered else 0
        # u0 and u0_tt / omega^2 in the initial model at every sample of the window, nondimensional
        self.register_buffer("background", torch.zeros(1, 2, samples, nz, nx))
        if self.scattered:
            self.wavefield.zero_output()
        self.sampler = CollocationSampler(hp["sampler"], 3, seed=0, pool_size=hp["adaptive_pool"],
                                          refresh_every=hp["adaptive_every"])
        self._scales()

    def _scales(self) -> None:
        """Scale factors of the nondimensional equation (see `pde_residual`)."""
        survey = self.problem.survey
        nz, nx = self.problem.velocity_shape
        lengths = ((nx - 1) * survey.spacing, (nz - 1) * survey.spacing)
        t1, _, end = (k * survey.dt for k in (self.steps[0], self.steps[1], self.steps[-1]))
        omega = 2.0 * math.pi * survey.peak_freq
        self.duration_s = end - t1
        # d/dt = (2 / duration) d/dtau, d/dx = (2 / L_x) d/dxi; residual divided by omega^2
        self.time_factor = (2.0 / self.duration_s) ** 2 / omega**2
        self.space_factors = ((2.0 / lengths[0]) ** 2 / omega**2, (2.0 / lengths[1]) ** 2 / omega**2)

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """One optimiser: the wavefield network at the optimiser's learning rate, the velocity network's
        at `velocity_lr_factor` times it."""
        spec = self.hparams.get("optimizer") or {}
        groups: list[dict[str, Any]] = [{"params": list(self.wavefield.parameters())}]
        if self.velocity_net is not None:
            lr = float(spec.get("lr", DEFAULT_PINN_OPTIMIZER["lr"])) * float(self.hparams["velocity_lr_factor"])
            groups.append({"params": list(self.velocity_net.parameters()), "lr": lr})
        return {"model": OptimizerGroup(groups, spec, self.hparams.get("scheduler"))}

    # -- coordinates --------------------------------------------------------------------

    def to_time(self, seconds: float | torch.Tensor) -> float | torch.Tensor:
        """Time in s -> tau in [-1, 1] over [t1, t_end]."""
        t1 = self.steps[0] * self.problem.survey.dt
        return 2.0 * (seconds - t1) / self.duration_s - 1.0

    def grid_points(self) -> torch.Tensor:
        """Every grid cell centre as normalised (x, z), [NZ * NX, 2], rows of depth then lateral."""
        nz, nx = self.problem.velocity_shape
        z, x = torch.meshgrid(torch.linspace(-1.0, 1.0, nz, device=self.start.device),
                              torch.linspace(-1.0, 1.0, nx, device=self.start.device), indexing="ij")
        return torch.stack([x.flatten(), z.flatten()], dim=1)

    def receiver_points(self) -> torch.Tensor:
        """The receivers as normalised (x, z), [R, 2]."""
        survey = self.problem.survey
        nz, nx = self.problem.velocity_shape
        columns = torch.tensor(survey.receiver_columns, dtype=torch.float32, device=self.start.device)
        x = 2.0 * columns / (nx - 1) - 1.0
        z = torch.full_like(x, 2.0 * survey.receiver_row / (nz - 1) - 1.0)
        return torch.stack([x, z], dim=1)

    # -- fields -------------------------------------------------------------------------

    def velocity_at(self, points: torch.Tensor) -> torch.Tensor:
        """Velocity in m/s at normalised (x, z) points [N, 2] -> [N]: the known or initial model, plus the network's update."""
        velocity = self.start_at(points)
        if self.velocity_net is not None:
            update = self.velocity_scale * torch.tanh(self.velocity_net(points)[:, 0])
            if self.training and self.global_step < self.hparams["velocity_warmup_steps"]:
                update = update.detach()  # the wavefield first learns the initial model's physics
            velocity = velocity + update
        return velocity.clamp(*self.problem.velocity_range)

    def start_at(self, points: torch.Tensor) -> torch.Tensor:
        """The known or initial velocity in m/s at normalised (x, z) points [N, 2] -> [N], bilinear."""
        grid = points.reshape(1, 1, -1, 2).to(self.start.dtype)
        return F.grid_sample(self.start, grid, mode="bilinear", align_corners=True).reshape(-1)

    def wavefield_at(self, points: torch.Tensor) -> torch.Tensor:
        """The nondimensional wavefield at normalised (x, z, tau) points [N, 3] -> [N] (with the background, if scattered)."""
        if self.scattered:
            return self.wavefield(points)[:, 0] + self.background_at(points)[0]
        return self.wavefield(points)[:, 0]

    def background_at(self, points: torch.Tensor) -> torch.Tensor:
        """u0 and u0_tt / omega^2 (nondimensional) at normalised (x, z, tau) points [N, 3] -> [2, N], trilinear."""
        grid = points.detach().reshape(1, 1, 1, -1, 3).to(self.background.dtype)
        return F.grid_sample(self.background, grid, mode="bilinear", align_corners=True).reshape(2, -1)

    def pde_residual(self, points: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        """The nondimensional wave-equation residual at normalised (x, z, tau) points [N, 3] -> [N].

        ``r = (u_tt - c^2 (u_xx + u_zz)) / (2 pi f_peak)^2`` in physical units, i.e.
        ``time_factor * u_tautau - c^2 (space_factor_x * u_xixi + space_factor_z * u_etaeta)``
        with the derivatives taken by autograd on the network's scaled inputs. In the scattered
        form u = u0 + du: the network gives du's derivatives, the background u0_tt and u0_tt / c0^2.
        """
        points = points.detach().requires_grad_(True)
        u = self.wavefield(points)[:, 0]
        (first,) = torch.autograd.grad(u.sum(), points, create_graph=True)
        second = []
        for axis in range(3):
            (grad,) = torch.autograd.grad(first[:, axis].sum(), points, create_graph=create_graph, retain_graph=True)
            second.append(grad[:, axis])
        velocity = self.velocity_at(points[:, :2].detach())
        laplacian = self.space_factors[0] * second[0] + self.space_factors[1] * second[1]
        acceleration = self.time_factor * second[2]
        if self.scattered:  # u = u0 + du, u0_tt = c0^2 lap u0
            acceleration_0 = self.background_at(points)[1]
            acceleration = acceleration + acceleration_0
            laplacian = laplacian + acceleration_0 / self.start_at(points[:, :2]).square()
        return acceleration - velocity.square() * laplacian

    def current_velocity(self) -> torch.Tensor:
        """The velocity on the grid: [1, 1, NZ, NX] m/s."""
        if self.velocity_net is None:
            return self.start.clamp(*self.problem.velocity_range)
        nz, nx = self.problem.velocity_shape
        return self.velocity_at(self.grid_points()).reshape(1, 1, nz, nx)

    def start_from(self, velocity: torch.Tensor) -> None:
        with torch.no_grad():
            self.start.copy_(velocity.to(self.start))

    def wavefield_grid(self, seconds: float) -> torch.Tensor:
        """The PINN wavefield on the grid at a time in s, [NZ, NX] in the Simulator's amplitude unit."""
        nz, nx = self.problem.velocity_shape
        points = self.grid_points()
        tau = torch.full((len(points), 1), float(self.to_time(seconds)), device=points.device)
        return (self.wavefield_at(torch.cat([points, tau], dim=1)) * self.amplitude).reshape(nz, nx)

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Before the first fit: the velocity (known or initial) and the Simulator snapshots."""
        if stage != "fit" or bool(self.initialised):
            return
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        truth = getattr(datamodule, "true_velocity", None)
        with registry.located("model"), torch.no_grad():
            if self.hparams["mode"] == "forward":
                if truth is None:
                    raise ConfigError("forward mode needs the velocity: a data module with a known true model "
                                      "(single_survey with 'model')", key="mode")
                start = truth.clamp(*self.problem.velocity_range)
            else:
                start = initial_velocity(self.hparams["initial"], self.problem, datamodule, key="initial")
            self.prepare(start.to(self.device), None if truth is None else truth.to(self.device))
        self.initialised.fill_(True)

    def prepare(self, start: torch.Tensor, truth: Optional[torch.Tensor] = None) -> None:
        """Set the known or initial velocity [1, 1, NZ, NX] m/s, the initial snapshots (simulated in it)
        and, with the true model, the reference snapshots at t_mid and t_end."""
        self.start_from(start)
        simulator = self.problem.forward_operator().simulator
        shot = self.hparams["shot"]
        with torch.no_grad():
            snapshots = simulator.snapshots(start[:, 0].float(), self.steps[:2], shot)[0]
            amplitude = snapshots[0].abs().max().clamp_min(1e-30)
            self.amplitude.copy_(amplitude)
            self.snapshots.copy_(snapshots / amplitude)
            if self.scattered:
                first, last = self.steps[0], self.steps[-1]
                frames = simulator.snapshots(start[:, 0].float(), list(range(first - 1, last + 2)), shot)[0] / amplitude
                dt, omega = self.problem.survey.dt, 2.0 * math.pi * self.problem.survey.peak_freq
                acceleration = (frames[2:] - 2.0 * frames[1:-1] + frames[:-2]) / dt**2 / omega**2
                self.background.copy_(torch.stack([frames[1:-1], acceleration])[None])
            if truth is not None:
                reference = simulator.snapshots(truth[:, 0].float(), self.steps[2:], shot)[0]
                self.reference.copy_(reference / amplitude)
                self.has_reference.fill_(True)

    # -- losses -----------------------------------------------------------------------------

    def loss_terms(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The unweighted loss terms of a step (those with a weight > 0)."""
        terms: dict[str, torch.Tensor] = {}
        device = self.start.device
        hp = self.hparams
        if self.weights["pde"] > 0:
            points = self.sampler(hp["collocation_points"], device, residual=lambda p: self.pde_residual(p, create_graph=False))
            points = self.marched(points)
            terms["pde"] = self.pde_residual(points).square().mean()
        if self.weights["initial"] > 0:
            terms["initial"] = self.initial_misfit(hp["initial_points"])
        if self.weights["data"] > 0:
            terms["data"] = self.data_misfit(batch["data"], hp["data_points"])
        if self.weights["boundary"] > 0:
            terms["boundary"] = self.boundary_misfit(edge_points(hp["initial_points"] or 1024, device)).square().mean()
        for name, term in (("smoothness", self.smoothness), ("prior", self.prior)):
            if self.weights[name] > 0 and self.velocity_net is not None:
                terms[name] = term(torch.rand(hp["collocation_points"], 2, device=device) * 2.0 - 1.0)
        return terms

    def marched(self, points: torch.Tensor) -> torch.Tensor:
        """Collocation points [N, 3] with their times squeezed into [-1, tau_max], tau_max growing from the
        second snapshot to 1 over the first `time_marching_steps` steps (unchanged after, or when 0)."""
        steps = self.hparams["time_marching_steps"]
        if not steps or self.global_step >= steps:
            return points
        second = float(self.to_time(self.steps[1] * self.problem.survey.dt))
        latest = second + (1.0 - second) * self.global_step / steps
        return torch.cat([points[:, :2], -1.0 + (points[:, 2:] + 1.0) * (latest + 1.0) / 2.0], dim=1)

    def initial_misfit(self, count: int) -> torch.Tensor:
        """Mean squared difference of the wavefield and the two snapshots (nondimensional)."""
        points = self.grid_points()
        losses = []
        for index, step in enumerate(self.steps[:2]):
            chosen = _subset(len(points), count, points.device)
            where = points if chosen is None else points[chosen]
            target = self.snapshots[index].flatten()
            target = target if chosen is None else target[chosen]
            tau = torch.full((len(where), 1), float(self.to_time(step * self.problem.survey.dt)), device=where.device)
            losses.append((self.wavefield_at(torch.cat([where, tau], dim=1)) - target).square().mean())
        return sum(losses) / len(losses)

    def data_misfit(self, data: torch.Tensor, count: int) -> torch.Tensor:
        """Relative misfit of the wavefield at the receivers and the recorded traces of the shot (data
        [B, S, T, R] raw amplitudes; the first sample's) inside the time window: the mean squared
        difference over the mean square of the traces (receivers far from the source record amplitudes
        far below the snapshots', which set the wavefield's scale)."""
        survey = self.problem.survey
        first, last = self.steps[0], self.steps[-1]
        traces = data[0, self.hparams["shot"], first : last + 1] / self.amplitude  # [T', R]
        receivers = self.receiver_points()
        times = torch.arange(first, last + 1, device=data.device, dtype=torch.float32) * survey.dt
        tau = self.to_time(times)
        t_index, r_index = torch.meshgrid(torch.arange(len(tau), device=data.device),
                                          torch.arange(len(receivers), device=data.device), indexing="ij")
        t_index, r_index = t_index.flatten(), r_index.flatten()
        chosen = _subset(len(t_index), count, data.device)
        if chosen is not None:
            t_index, r_index = t_index[chosen], r_index[chosen]
        points = torch.cat([receivers[r_index], tau[t_index, None]], dim=1)
        misfit = (self.wavefield_at(points) - traces[t_index, r_index].float()).square().mean()
        return misfit / traces.float().square().mean().clamp_min(1e-30)

    def boundary_misfit(self, points: torch.Tensor) -> torch.Tensor:
        """The absorbing condition ``(u_t + c du/dn) / (2 pi f_peak)`` of the network's field (the scattered
        field in the scattered form) at edge points [N, 3] (normalised (x, z, tau), each on an edge) -> [N];
        n is the outward normal of the edge the point lies on (a corner: the x edge), c the current velocity."""
        points = points.detach().requires_grad_(True)
        (first,) = torch.autograd.grad(self.wavefield(points)[:, 0].sum(), points, create_graph=True)
        on_x = points[:, 0].detach().abs() >= 1.0
        normal = torch.where(on_x, points[:, 0], points[:, 1]).detach().sign()  # +-1
        space = torch.where(on_x, first[:, 0] * self.space_factors[0] ** 0.5, first[:, 1] * self.space_factors[1] ** 0.5)
        velocity = self.velocity_at(points[:, :2].detach()).detach()
        return first[:, 2] * self.time_factor**0.5 + velocity * normal * space

    def smoothness(self, points: torch.Tensor) -> torch.Tensor:
        """Mean squared gradient of the velocity on the [-1, 1] scale of the range, over normalised (x, z) points [N, 2]."""
        points = points.detach().requires_grad_(True)
        normalised = self.problem.normalise_velocity(self.velocity_at(points))
        (grad,) = torch.autograd.grad(normalised.sum(), points, create_graph=True)
        return grad.square().sum(dim=1).mean()

    def prior(self, points: torch.Tensor) -> torch.Tensor:
        """Mean squared difference of the velocity and the initial model on the [-1, 1] scale of the range, over normalised (x, z) points [N, 2]."""
        v_min, v_max = self.problem.velocity_range
        return ((self.velocity_at(points) - self.start_at(points)) / ((v_max - v_min) / 2.0)).square().mean()

    # -- steps ------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The weighted PINN loss; logs it, every term unweighted and, with the true model, the model error."""
        terms = self.loss_terms(batch)
        total = sum(self.weights[name] * value for name, value in terms.items())
        self.log_losses("train", total, terms, 1)
        if batch.get("velocity") is not None and self.velocity_net is not None:
            with torch.no_grad():
                errors = model_errors(self.problem, self.current_velocity(), batch["velocity"][:1])
            self.log_dict(errors, on_step=True, on_epoch=False, batch_size=1)
        return total

    def wavefield_error(self) -> Optional[torch.Tensor]:
        """Relative L2 difference of the PINN and the Simulator (true model) wavefields at t_end; None without the truth."""
        if not bool(self.has_reference):
            return None
        with torch.no_grad():
            pinn = self.wavefield_grid(self.steps[-1] * self.problem.survey.dt) / self.amplitude
            reference = self.reference[-1]
            return (pinn - reference).norm() / reference.norm().clamp_min(1e-30)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        prediction = super().validation_step(batch, batch_idx)
        error = self.wavefield_error()
        if error is not None:
            self.log("val/wavefield_rel_l2", error, batch_size=1)
        return prediction

    def on_fit_end(self) -> None:
        """Like ``fwi`` (final model, figure), plus ``figures/wavefield.png``."""
        super().on_fit_end()
        if self.trainer.is_global_zero:
            self.save_wavefield_figure(Path(self.trainer.default_root_dir) / "figures" / "wavefield.png")

    def save_wavefield_figure(self, path: Path) -> Path:
        """Snapshots at t1, t_mid and t_end: PINN, Simulator (true model; the initial snapshots at t1) and difference."""
        dt = self.problem.survey.dt
        steps = [self.steps[0], *self.steps[2:]]
        with torch.no_grad():
            pinn = [self.wavefield_grid(k * dt).cpu().numpy() for k in steps]
        amplitude = float(self.amplitude)
        simulated = [self.snapshots[0].cpu().numpy() * amplitude]
        simulated += [r.cpu().numpy() * amplitude for r in self.reference] if bool(self.has_reference) else [None, None]
        fig = wavefield_comparison(self.problem, [k * dt for k in steps], pinn, simulated)
        return plotting.save(fig, path)


# -- helpers ---------------------------------------------------------------------------------


def time_window(problem: Problem, initial_times_s: Optional[Sequence[float]], end_time_s: Optional[float]) -> list[int]:
    """Time samples [k1, k2, k_mid, k_end] of the PINN: the two snapshots, the middle and the end of the window.

    Raises:
        ConfigError: times outside the record (0, (nt - 1) dt], not increasing, or a
            window of zero duration.
    """
    survey = problem.survey
    dt, last = survey.dt, survey.nt - 1
    if initial_times_s is None:
        t1 = wavelets.peak_time(survey) + SOURCE_END_PERIODS / survey.peak_freq
        k1 = math.ceil(t1 / dt - 1e-9)
        k2 = k1 + max(1, round(SNAPSHOT_GAP_PERIODS / survey.peak_freq / dt))
    else:
        if isinstance(initial_times_s, (str, bytes)) or len(initial_times_s) != 2:
            raise ConfigError(f"expected [t1, t2] in s, got {initial_times_s!r}", key="initial_times_s")
        k1, k2 = (round(float(t) / dt) for t in initial_times_s)
        if not 1 <= k1 < k2:
            raise ConfigError(f"expected 0 < t1 < t2 at least one sample ({dt:g} s) apart, got {list(initial_times_s)}",
                              key="initial_times_s")
    k_end = last if end_time_s is None else round(float(end_time_s) / dt)
    if k2 > last:
        raise ConfigError(f"the initial snapshots at {k1 * dt:g} and {k2 * dt:g} s lie beyond the record's last sample "
                          f"({last * dt:g} s); record longer (survey.nt) or give earlier initial_times_s", key="initial_times_s")
    if k_end > last:
        raise ConfigError(f"end_time_s={end_time_s} lies beyond the record's last sample ({last * dt:g} s)", key="end_time_s")
    if k_end <= k2:
        raise ConfigError(f"the time window from the second snapshot ({k2 * dt:g} s) to the end ({k_end * dt:g} s) has zero "
                          "duration; give a later end_time_s or a longer record (survey.nt)", key="end_time_s")
    return [k1, k2, (k2 + k_end) // 2, k_end]


def edge_points(count: int, device: torch.device) -> torch.Tensor:
    """`count` random normalised (x, z, tau) points [count, 3] on the four edges of the grid (a quarter on each) over the window."""
    points = torch.rand(count, 3, device=device) * 2.0 - 1.0
    edge = torch.arange(count, device=device) % 4  # left, right, top, bottom
    axis, side = edge // 2, (edge % 2) * 2.0 - 1.0
    points[axis == 0, 0] = side[axis == 0]
    points[axis == 1, 1] = side[axis == 1]
    return points


def _checked_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    unknown = [k for k in weights if k not in DEFAULT_WEIGHTS]
    if unknown:
        raise ConfigError(f"unknown loss term '{unknown[0]}'; the terms are {', '.join(DEFAULT_WEIGHTS)}", key=f"weights.{unknown[0]}")
    checked = dict(DEFAULT_WEIGHTS)
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"expected a weight >= 0, got {value!r}", key=f"weights.{name}")
        checked[name] = float(value)
    if not any(checked[name] > 0 for name in ("pde", "initial", "data")):
        raise ConfigError("every weight of pde, initial and data is 0: nothing to fit", key="weights")
    return checked


def _coordinate_network(spec: Mapping[str, Any], key: str, problem: Problem, in_features: int) -> CoordinateNetwork:
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    cls = registry.load("networks", name, key=f"{key}.name")
    if not (isinstance(cls, type) and issubclass(cls, CoordinateNetwork)):
        raise ConfigError(f"network '{name}' maps gathers to velocity; the pinn paradigm needs a coordinate network "
                          "(pinn_mlp, pinn_siren)", key=f"{key}.name")
    return registry.build("networks", spec, key=key, problem=problem, in_features=in_features)


def _subset(total: int, count: int, device: torch.device) -> Optional[torch.Tensor]:
    """`count` random indices of `total` (None: all, when count is 0 or covers them)."""
    if count == 0 or count >= total:
        return None
    return torch.randint(total, (count,), device=device)


def wavefield_comparison(problem: Problem, times_s: Sequence[float], pinn: Sequence[np.ndarray],
                         simulated: Sequence[Optional[np.ndarray]]):
    """One column per time: PINN, Simulator and PINN - Simulator wavefields [NZ, NX] on one colour scale per column."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = len(times_s)
    fig = Figure(figsize=(3.4 * columns, 8.4), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(3, columns, squeeze=False))
    extent = plotting.velocity_extent(problem)
    for col, (t, mine, theirs) in enumerate(zip(times_s, pinn, simulated)):
        scale = float(np.abs(theirs if theirs is not None else mine).max()) or 1.0
        rows = [(mine, "PINN"), (theirs, "Simulator"), (None if theirs is None else mine - theirs, "PINN - Simulator")]
        for row, (image, label) in enumerate(rows):
            ax = axes[row, col]
            if image is None:
                ax.set_axis_off()
                continue
            shown = ax.imshow(image, extent=extent, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
            fig.colorbar(shown, ax=ax)
            title = f"{label}, t = {t:.3f} s"
            if row == 2:
                title += f"\nrel. L2 {np.linalg.norm(image) / max(np.linalg.norm(theirs), 1e-30):.3f}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x (km)")
            ax.set_ylabel("depth (km)")
    return fig
