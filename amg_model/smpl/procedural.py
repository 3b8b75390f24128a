"""Procedural motions: idle, walk, run, wave, jump and turn, made from joint-angle curves.

Each kind is a set of smooth (periodic or eased) joint-angle curves over time. The root is then
placed by foot contact on an approximate SMPL rest skeleton (REST_JOINTS): the lowest of the
heels / toes (soft minimum) is kept at its rest height, and the horizontal root velocity cancels
the velocity of the supporting foot, so feet do not slide and the pelvis bobs as the legs bend.
Curves are evaluated on a fine time grid (at least OVERSAMPLE_HZ) before sampling the frames, so
the result does not depend on the frame rate.

Conventions: y-up world, the person starts above the origin facing +z and walks along +z, feet
on the ground plane y = 0: the mannequin's rest soles (and about those of a mean-shape SMPL
body) lie REST_SOLE_DEPTH_M below the origin, so standing is ``transl = (0, 1.15, 0)``. Motions
are made for the mannequin and converted to other body types keeping the pelvis in place
(formats.convert.change_body_type). Arms hang by the sides (SMPL's rest is a T-pose: shoulders
are rotated about z by -/+ ARMS_DOWN_DEG). Joint angles are in degrees and
compose as R = Rx @ Ry @ Rz (roma's intrinsic "XYZ"): for legs, negative x flexes the hip forward,
positive x flexes the knee, negative x lifts the toes; positive x bends the spine forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import change_body_type
from amg_model.smpl.kinematics import SMPL_JOINT_NAMES, forward_kinematics
from amg_model.smpl.mannequin import REST_PELVIS, rest_joints_array
from amg_model.smpl.motion import BODY_JOINTS, Motion, Person

OVERSAMPLE_HZ = 240.0
REST_SOLE_DEPTH_M = 1.15  # smpl.mannequin: soles 1.15 m below the origin at rest
ARMS_DOWN_DEG = 72.0
CONTACT_SOFTNESS_M = 0.003
# Gaussian sigmas that round the root path where the support changes feet: small horizontally
# (feet would slide), larger vertically (the height follows the lowest foot and has corners)
ROOT_SMOOTHING_S = 0.025
HEIGHT_SMOOTHING_S = 0.06
GRAVITY = 9.81
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def _rest_joints() -> torch.Tensor:
    """The mannequin's rest joints [24, 3], placed as the mannequin body places them."""
    joints = torch.from_numpy(rest_joints_array())
    return joints - joints[0] + torch.tensor(REST_PELVIS, dtype=joints.dtype)


REST_JOINTS = _rest_joints()  # [24, 3] the skeleton used to place the root


def _sole_points() -> tuple[list[int], torch.Tensor]:
    """Heel, ball and toe tip of each sole (left then right): bone index [6] and rest point [6, 3].

    Heel and ball move with the ankle, the toe tip with the toes; measured from the mannequin's
    feet (heel 4.5 cm behind the ankle, toe tip 7.5 cm in front of the toe joint).
    """
    bones, points = [], []
    for side in ("left", "right"):
        ankle, toe = REST_JOINTS[J[f"{side}_ankle"]], REST_JOINTS[J[f"{side}_foot"]]
        sole = -REST_SOLE_DEPTH_M
        bones += [J[f"{side}_ankle"], J[f"{side}_ankle"], J[f"{side}_foot"]]
        points += [(ankle[0], sole, ankle[2] - 0.045), (toe[0], sole, toe[2]), (toe[0], sole, toe[2] + 0.075)]
    return bones, torch.tensor(points, dtype=torch.float64)


_SOLE_BONES, _SOLE_POINTS = _sole_points()

Angles = dict[str, torch.Tensor]  # joint name -> [N, 3] degrees (x, y, z)


@dataclass
class Curves:
    """What a kind produces on the time grid [N].

    Attributes:
        angles: joint name -> [N, 3] degrees.
        yaw: [N] degrees about y of the whole body.
        lift: [N] metres added to the root height (ballistic flight).
        gate: [N] 1 on the ground, 0 in flight landing in place, -1 in flight keeping momentum.
        support: [N] share of the weight on the left foot (the right has the rest), or None to
            let the lowest foot carry it.
        travel: whether the feet move the body horizontally (False: the pelvis stays above its
            start and the feet pivot under it, as in turning on the spot).
    """

    angles: Angles
    yaw: torch.Tensor
    lift: torch.Tensor
    gate: torch.Tensor
    support: torch.Tensor | None = None
    travel: bool = True


def _bump(phase: torch.Tensor, centre: float, width: float) -> torch.Tensor:
    """Smooth periodic bump (von Mises) peaking at 1 at ``centre`` (fraction of a cycle)."""
    kappa = 1.0 / (2 * math.pi * width) ** 2
    return torch.exp(kappa * (torch.cos(phase - 2 * math.pi * centre) - 1.0))


def _periodic(keys: list[tuple[float, float]], harmonics: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth periodic curve (least-squares Fourier series) through (cycle fraction, value) keys."""
    p = 2 * math.pi * torch.tensor([k[0] for k in keys], dtype=torch.float64)
    v = torch.tensor([k[1] for k in keys], dtype=torch.float64)

    def basis(phase: torch.Tensor) -> torch.Tensor:
        cols = [torch.ones_like(phase)]
        for h in range(1, harmonics + 1):
            cols += [torch.cos(h * phase), torch.sin(h * phase)]
        return torch.stack(cols, dim=-1)

    coef = torch.linalg.lstsq(basis(p), v[:, None]).solution[:, 0]
    return lambda phase: basis(phase) @ coef


# Sagittal joint angles over one gait cycle (fraction from the heel strike of that leg, degrees):
# hip flexion, knee flexion, ankle dorsiflexion, after textbook gait curves. The hip sweeps back
# almost linearly in stance so the pelvis moves at a nearly constant speed.
_WALK_HIP = _periodic([(0.0, 27), (0.1, 21), (0.2, 12), (0.3, 3), (0.4, -6), (0.47, -11), (0.52, -10),
                       (0.6, -2), (0.7, 12), (0.8, 26), (0.88, 31), (0.95, 30)])  # fmt: skip
_WALK_KNEE = _periodic([(0.0, 3), (0.06, 8), (0.15, 14), (0.3, 7), (0.4, 4), (0.5, 10), (0.6, 38),
                        (0.7, 60), (0.76, 58), (0.85, 35), (0.95, 6)])  # fmt: skip
_WALK_ANKLE = _periodic([(0.0, 0), (0.07, -5), (0.2, 4), (0.4, 10), (0.5, 6), (0.6, -14), (0.66, -12),
                         (0.75, -2), (0.9, 2)])  # fmt: skip
# Running: stance 0-0.36 of each leg's cycle, flight 0.36-0.5 and 0.86-1.
_RUN_STANCE = 0.36
_RUN_HIP = _periodic([(0.0, 30), (0.1, 22), (0.25, 2), (0.36, -12), (0.45, -8), (0.55, 10), (0.7, 40),
                      (0.85, 42), (0.95, 35)])  # fmt: skip
_RUN_KNEE = _periodic([(0.0, 15), (0.12, 38), (0.25, 22), (0.36, 18), (0.5, 60), (0.65, 100), (0.75, 95),
                       (0.88, 40), (0.96, 18)])  # fmt: skip
_RUN_ANKLE = _periodic([(0.0, 3), (0.12, 18), (0.25, 5), (0.36, -20), (0.5, -10), (0.7, 3), (0.9, 5)])


def _ease(x: torch.Tensor) -> torch.Tensor:
    """Quintic smoothstep on [0, 1] (continuous velocity and acceleration), clamped outside."""
    x = x.clamp(0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _keyframes(s: torch.Tensor, keys: list[tuple[float, float]]) -> torch.Tensor:
    """Ease between (time, value) keys; ``s`` in the keys' time units, held outside."""
    out = torch.full_like(s, keys[0][1])
    for (t0, v0), (t1, v1) in zip(keys[:-1], keys[1:], strict=True):
        out = out + (v1 - v0) * _ease((s - t0) / max(t1 - t0, 1e-9))
    return out


def _base(n: int) -> Angles:
    """Relaxed standing pose: arms down by the sides, elbows slightly bent."""
    z = torch.zeros(n, 3, dtype=torch.float64)
    a = {name: z.clone() for name in SMPL_JOINT_NAMES}
    a["left_shoulder"][:, 2] = -ARMS_DOWN_DEG
    a["right_shoulder"][:, 2] = ARMS_DOWN_DEG
    a["left_shoulder"][:, 0] = -4.0  # hands a little in front of the thighs
    a["right_shoulder"][:, 0] = -4.0
    a["left_elbow"][:, 1] = -10.0
    a["right_elbow"][:, 1] = 10.0
    return a


def _arms_swing(a: Angles, swing_deg: torch.Tensor, elbow_deg: float, elbow_gain: float) -> None:
    """Swing the arms in opposition: ``swing_deg`` > 0 moves the left arm forward, the right back.

    Elbows bend ``elbow_deg`` plus ``elbow_gain`` times the forward swing of their arm.
    """
    a["left_shoulder"][:, 0] += -swing_deg
    a["right_shoulder"][:, 0] += swing_deg
    a["left_elbow"][:, 1] = -(elbow_deg + elbow_gain * swing_deg.clamp(min=0))
    a["right_elbow"][:, 1] = elbow_deg + elbow_gain * (-swing_deg).clamp(min=0)


def _idle(t: torch.Tensor, speed: float, **_) -> Curves:
    a = _base(len(t))
    breath = torch.sin(2 * math.pi * 0.25 * speed * t)
    shift = torch.sin(2 * math.pi * 0.12 * speed * t - math.pi / 2)  # starts at one side, eases over
    a["spine3"][:, 0] += 1.2 * breath
    a["spine2"][:, 0] += 0.6 * breath
    a["left_collar"][:, 2] += 1.0 * breath
    a["right_collar"][:, 2] -= 1.0 * breath
    a["pelvis"][:, 2] += 2.5 * shift  # roll towards the loaded leg
    a["left_hip"][:, 2] -= 2.5 * shift  # legs stay vertical under the rolled pelvis
    a["right_hip"][:, 2] -= 2.5 * shift
    a["spine1"][:, 2] -= 2.0 * shift
    a["spine3"][:, 2] -= 0.8 * shift
    a["left_knee"][:, 0] += 4.0 * (1 - shift) / 2  # the unloaded knee relaxes
    a["right_knee"][:, 0] += 4.0 * (1 + shift) / 2
    a["head"][:, 1] += 4.0 * torch.sin(2 * math.pi * 0.07 * speed * t)
    a["head"][:, 0] += 1.5 * torch.sin(2 * math.pi * 0.11 * speed * t + 1.0)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        a[f"{side}_shoulder"][:, 0] += 1.5 * torch.sin(2 * math.pi * 0.2 * speed * t + sign)
    zero = torch.zeros_like(t)
    return Curves(a, zero, zero, torch.ones_like(t))


def _gait(t: torch.Tensor, speed: float, run: bool) -> Curves:
    """Walk / run cycle; phase 0 = left heel strike. Right leg half a cycle later."""
    scale = max(speed, 0.05) ** 0.5
    cadence = (1.45 if run else 0.95) * scale  # gait cycles per second
    phase = 2 * math.pi * cadence * t
    a = _base(len(t))
    amp = min(scale, 1.4)
    for side, shift in (("left", 0.0), ("right", math.pi)):
        p = phase - shift
        hip, knee, ankle = (_RUN_HIP, _RUN_KNEE, _RUN_ANKLE) if run else (_WALK_HIP, _WALK_KNEE, _WALK_ANKLE)
        hip, knee, ankle = hip(p), knee(p), ankle(p)
        a[f"{side}_hip"][:, 0] = -amp * hip
        a[f"{side}_knee"][:, 0] = amp * knee
        a[f"{side}_ankle"][:, 0] = -amp * ankle
        sign = 1.0 if side == "left" else -1.0  # feet a little towards the midline, soles flat
        a[f"{side}_hip"][:, 2] = -3.5 * sign
        a[f"{side}_ankle"][:, 2] = 3.5 * sign
    a["pelvis"][:, 1] = 4 * amp * torch.cos(phase)  # pelvis turns with the forward leg
    a["pelvis"][:, 2] = 2.5 * amp * torch.cos(2 * phase + 0.6)  # drops on the swing side
    a["spine2"][:, 1] = -5 * amp * torch.cos(phase)  # torso counter-rotates
    a["spine1"][:, 0] = 8.0 if run else 2.0  # lean forward
    a["head"][:, 0] = -4.0 if run else -1.0
    swing = (30 if run else 16) * amp * -torch.cos(phase)  # left arm back while left leg forward
    _arms_swing(a, swing, 80.0 if run else 15.0, 0.4)
    gate, lift = torch.ones_like(t), torch.zeros_like(t)
    if run:  # flight twice per cycle, after each toe-off: ballistic, keeping the take-off velocity
        half = (phase / math.pi) % 1.0  # fraction of the half cycle since a heel strike
        flight_time = (0.5 - _RUN_STANCE) / cadence
        u = ((half - 2 * _RUN_STANCE) / (1 - 2 * _RUN_STANCE)).clamp(0, 1)
        gate = (half < 2 * _RUN_STANCE).to(t.dtype) * 2 - 1  # -1: flight with momentum
        lift = torch.where(gate < 0, GRAVITY * flight_time**2 / 2 * u * (1 - u), lift)
    # weight on the left foot: taken over from the right during double support (walk: first
    # 10 % after each heel strike); in a run the swaps happen in flight
    frac = (phase / (2 * math.pi)) % 1.0
    if run:
        support = (frac < 0.5).to(t.dtype)
    else:
        support = torch.where(frac < 0.5, _ease(frac / 0.1), 1 - _ease((frac - 0.5) / 0.1))
    return Curves(a, torch.zeros_like(t), lift, gate, support)


def _walk(t, speed, **_):
    return _gait(t, speed, run=False)


def _run(t, speed, **_):
    return _gait(t, speed, run=True)


def _wave(t: torch.Tensor, speed: float, duration: float, hand: str = "right", **_):
    curves = _idle(t, 0.6 * speed)
    a = curves.angles
    side = 1.0 if hand == "right" else -1.0  # mirror sign for z / y angles
    ramp = min(0.6 / speed, 0.25 * duration)
    env = _ease(t / ramp) * _ease((duration - t) / ramp) if duration > 2 * ramp else _ease(t / ramp)
    wave = torch.sin(2 * math.pi * 1.6 * speed * t) * env**3  # waves once the arm is up
    sh, el = f"{hand}_shoulder", f"{hand}_elbow"
    down = ARMS_DOWN_DEG * side
    raised = -55.0 * side  # upper arm 55 deg above horizontal
    a[sh][:, 2] = down + (raised - down) * env
    a[sh][:, 0] = -4.0 + (-22.0 + 4.0) * env  # a little forward of the shoulder line
    # forearm vertical (elbow about z), swinging side to side
    a[el][:, 2] = -(38.0 + 22.0 * wave) * side * env
    a[el][:, 1] = 10.0 * side * (1 - env)
    a[f"{hand}_wrist"][:, 2] = -10.0 * wave * side * env
    a["spine3"][:, 2] += 3.0 * side * env  # lean away from the raised arm
    a["head"][:, 2] += -3.0 * side * env
    return curves


def _jump(t: torch.Tensor, speed: float, **_):
    cycle = 2.0 / max(speed, 0.05)
    s = (t % cycle) / cycle
    a = _base(len(t))
    # key times: crouch 0.33, take-off 0.45, landing 0.70, absorb 0.78, stand 0.95
    keys = {
        ("left_hip", 0): [(0.1, 0), (0.33, -60), (0.45, 5), (0.58, -30), (0.70, -20), (0.78, -50), (0.95, 0)],
        ("left_knee", 0): [(0.1, 0), (0.33, 85), (0.45, 0), (0.58, 50), (0.70, 20), (0.78, 70), (0.95, 0)],
        ("left_ankle", 0): [(0.1, 0), (0.33, -25), (0.45, 30), (0.58, 10), (0.70, 5), (0.78, -20), (0.95, 0)],
        ("spine1", 0): [(0.1, 0), (0.33, 25), (0.45, -3), (0.58, 5), (0.70, 5), (0.78, 20), (0.95, 0)],
        ("left_shoulder", 0): [(0.1, -4), (0.30, 35), (0.47, -95), (0.58, -80), (0.70, -40), (0.78, -20),
                               (0.95, -4)],
        ("left_elbow", 1): [(0.1, -10), (0.33, -20), (0.45, -10), (0.58, -30), (0.78, -30), (0.95, -10)],
    }  # fmt: skip
    for (joint, axis), k in keys.items():
        value = _keyframes(s, k)
        a[joint][:, axis] = value
        if joint.startswith("left_"):
            other = "right_" + joint[5:]
            a[other][:, axis] = -value if joint.endswith("elbow") else value
    t_off, t_land = 0.45 * cycle, 0.70 * cycle
    flight = ((t % cycle) > t_off) & ((t % cycle) < t_land)
    u = ((t % cycle) - t_off) / (t_land - t_off)
    height = GRAVITY * (t_land - t_off) ** 2 / 8  # ballistic apex for this flight time
    lift = torch.where(flight, 4 * height * u * (1 - u), torch.zeros_like(t))
    return Curves(a, torch.zeros_like(t), lift, (~flight).to(t.dtype))


def _turn(t: torch.Tensor, speed: float, duration: float, angle_deg: float = 180.0, **_):
    curves = _idle(t, speed)
    a = curves.angles
    s = t / max(duration, 1e-6)
    yaw = angle_deg * _ease((s - 0.1) / 0.8)
    env = _ease(s / 0.15) * _ease((1 - s) / 0.15)
    steps = 1.8 * max(speed, 0.05) ** 0.5  # steps per second per foot
    phase = 2 * math.pi * steps * t
    for side, shift in (("left", 0.0), ("right", math.pi)):
        lift = torch.sin(phase - shift).clamp(min=0) ** 2 * env
        a[f"{side}_hip"][:, 0] += -22 * lift
        a[f"{side}_knee"][:, 0] += 40 * lift
        a[f"{side}_ankle"][:, 0] += -8 * lift
    _arms_swing(a, 5 * torch.sin(phase) * env, 15.0, 0.0)
    return replace(curves, yaw=yaw, travel=False)


KINDS: dict[str, Callable] = {
    "idle": _idle,
    "walk": _walk,
    "run": _run,
    "wave": _wave,
    "jump": _jump,
    "turn": _turn,
}


def _rotmats(a: Angles, yaw_deg: torch.Tensor) -> torch.Tensor:
    """[N, 24, 3, 3] local rotations (joint 0 = global orientation including the yaw)."""
    stacked = torch.stack([a[name] for name in SMPL_JOINT_NAMES], dim=1)  # [N, 24, 3]
    mats = roma.euler_to_rotmat("XYZ", stacked, degrees=True)
    yaw = roma.euler_to_rotmat("Y", yaw_deg[:, None], degrees=True)
    mats[:, 0] = yaw @ mats[:, 0]
    return mats


def _place_root(mats: torch.Tensor, curves: Curves, dt: float) -> torch.Tensor:
    """Root translation [N, 3] that keeps the supporting foot planted (see the module docstring)."""
    _, transforms = forward_kinematics(mats, REST_JOINTS.to(mats))
    bone = transforms[:, _SOLE_BONES]  # [N, 6, 4, 4] rest point -> posed point, no translation
    rest = _SOLE_POINTS.to(mats)
    pts = (bone[..., :3, :3] @ rest[..., None])[..., 0] + bone[..., :3, 3]  # [N, 6, 3]
    clearance = pts[..., 1] - rest[:, 1]
    w = torch.softmax(-clearance / CONTACT_SOFTNESS_M, dim=-1)  # [N, 4] support weights
    if curves.support is not None:  # the kind says which foot; heel or toe: the lower one
        left = torch.softmax(-clearance[:, :3] / CONTACT_SOFTNESS_M, dim=-1) * curves.support[:, None]
        right = torch.softmax(-clearance[:, 3:] / CONTACT_SOFTNESS_M, dim=-1) * (1 - curves.support[:, None])
        w = torch.cat([left, right], dim=-1)
    gate, lift = curves.gate, curves.lift
    ground = -CONTACT_SOFTNESS_M * torch.logsumexp(-clearance / CONTACT_SOFTNESS_M, dim=-1)
    ground = ground + CONTACT_SOFTNESS_M * math.log(len(_SOLE_BONES))  # 0 when all touch
    y = -ground
    vel = (pts[1:] - pts[:-1]) / dt  # [N-1, 4, 3] contact point velocities relative to the root
    step_vel = -(0.5 * (w[1:] + w[:-1])[..., None] * vel).sum(1)  # cancels the supporting points
    # In flight (gate 0 or -1) the feet say nothing: between take-off frame a and landing frame b
    # the pelvis moves at a constant horizontal velocity, the take-off velocity (gate -1, running)
    # or the one that lands the supporting point where it took off (gate 0, jumping in place), and
    # its height follows the line between the two contact heights plus the ballistic ``lift``.
    contact = (w[..., None] * pts).sum(1)  # [N, 3] weighted support point, relative to the root
    flying = (gate < 0.5).tolist()
    n, i = len(flying), 0
    while i < n:
        if not flying[i]:
            i += 1
            continue
        j = i
        while j < n and flying[j]:
            j += 1
        a, b = max(i - 1, 0), min(j, n - 1)
        if b > a:
            if gate[i] < -0.5 and a > 0:  # momentum: keep the take-off velocity (forward only)
                step_vel[a:b] = step_vel[a - 1] * torch.tensor([0.0, 1.0, 1.0], dtype=step_vel.dtype)
            else:  # land the support point where it took off (jumping in place)
                step_vel[a:b] = (contact[a] - contact[b]) / ((b - a) * dt)
            u = torch.linspace(0, 1, b - a + 1, dtype=y.dtype)
            y = torch.cat([y[:a], y[a] + (y[b] - y[a]) * u, y[b + 1 :]])
        i = j
    y = y + lift
    if not curves.travel:
        step_vel = torch.zeros_like(step_vel)
    xz = torch.cat([torch.zeros(1, 3, dtype=mats.dtype), torch.cumsum(step_vel * dt, 0)])
    if curves.support is not None and len(xz) > 2:  # gaits go straight along +z: remove the
        # sideways drift left by small left/right asymmetries (least-squares slope of x over time)
        t = torch.arange(len(xz), dtype=xz.dtype)
        slope = ((t - t.mean()) * (xz[:, 0] - xz[:, 0].mean())).sum() / ((t - t.mean()) ** 2).sum()
        xz[:, 0] = xz[:, 0] - slope * t
    root = torch.stack([xz[:, 0], y, xz[:, 2]], dim=-1)
    root = _smooth(root, ROOT_SMOOTHING_S / dt)
    root[:, 1] = _smooth(root[:, 1:2], HEIGHT_SMOOTHING_S / dt)[:, 0]
    return root


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of [N, C] over N (sigma in samples), keeping the first sample.

    The ends are padded by point reflection (2 x_0 - x_k), which keeps straight-line motion
    straight up to the ends.
    """
    radius = min(int(3 * sigma), len(x) - 1)
    if radius < 1:
        return x
    k = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (k / sigma) ** 2)
    kernel = kernel / kernel.sum()
    head = 2 * x[:1] - x[1 : radius + 1].flip(0)
    tail = 2 * x[-1:] - x[-radius - 1 : -1].flip(0)
    padded = torch.cat([head, x, tail]).T[:, None]  # [C, 1, N + 2r]
    out = torch.nn.functional.conv1d(padded, kernel.reshape(1, 1, -1))[:, 0].T
    return out - out[:1] + x[:1]


def procedural_motion(
    kind: str,
    frames: int = 48,
    fps: float = 24.0,
    speed: float = 1.0,
    body_type: str = "mannequin",
    gender: str = "neutral",
    betas: torch.Tensor | None = None,
    angle_deg: float = 180.0,
    hand: str = "right",
) -> Motion:
    """A one-person procedural motion.

    Args:
        kind: one of KINDS: "idle", "walk", "run", "wave", "jump", "turn".
        frames: number of frames F; fps: frame rate.
        speed: tempo multiplier (walk/run: cadence and stride grow with sqrt(speed)).
        body_type: "mannequin"/"smpl" (23 body joints) or "smplh"/"smplx" (the first 21;
            hands flat, hand poses left unset).
        gender, betas: passed to the Person (betas default: 10 zeros).
        angle_deg: total turn for "turn" (positive turns left, +z towards +x).
        hand: "right" or "left", the waving hand for "wave".

    Returns:
        Motion with one Person named after the kind: global_orient [F, 3, 3],
        body_pose [F, J, 3, 3], transl [F, 3] (y-up, feet on y = 0, starting at x = z = 0).
    """
    if kind not in KINDS:
        raise MotionError(f"procedural motion: unknown kind {kind!r}; use one of {sorted(KINDS)}.")
    if body_type not in BODY_JOINTS:
        raise MotionError(
            f"procedural motion: unknown body type {body_type!r}; use one of {sorted(BODY_JOINTS)}."
        )
    if frames < 1 or not fps > 0 or not speed > 0:
        raise MotionError(
            f"procedural motion: frames ({frames}), fps ({fps}) and speed ({speed}) must be positive."
        )
    if hand not in ("left", "right"):
        raise MotionError(f"procedural motion: hand must be 'left' or 'right', got {hand!r}.")
    sub = max(1, math.ceil(OVERSAMPLE_HZ / fps))
    dt = 1.0 / (fps * sub)
    t = torch.arange((frames - 1) * sub + 1, dtype=torch.float64) * dt
    duration = (frames - 1) / fps if frames > 1 else 1.0 / fps
    curves = KINDS[kind](t, speed, duration=duration, angle_deg=angle_deg, hand=hand)
    mats = _rotmats(curves.angles, curves.yaw)
    transl = _place_root(mats, curves, dt)
    transl[:, 1] += REST_SOLE_DEPTH_M
    mats, transl = mats[::sub], transl[::sub]
    person = Person(
        body_type="mannequin",
        gender=gender,
        betas=torch.zeros(10) if betas is None else torch.as_tensor(betas, dtype=torch.float32).reshape(-1),
        global_orient=mats[:, 0].float(),
        body_pose=mats[:, 1:].float(),
        transl=transl.float(),
        name=kind,
    )
    person = change_body_type(person, body_type)
    motion = Motion(persons=[person], fps=float(fps))
    motion.validate(f"procedural {kind}")
    return motion
