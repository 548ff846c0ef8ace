"""A scene: 1-3 objects (shape, colour, size) in distinct cells of a 3x3 grid, its captions and
its hard negative (the scene with exactly one attribute of one object swapped)."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["SceneObject", "sample_scene", "caption_en", "caption_zh", "hard_negative", "scene_objects",
           "COLORS", "SHAPES", "SIZES", "POSITIONS", "ATTRIBUTES"]

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (240, 130, 20)}
COLORS_ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"}
SHAPES = ("circle", "square", "triangle", "star")
SHAPES_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}
SIZES = ("small", "large")
SIZES_ZH = {"small": "小的", "large": "大的"}
# (row, col) -> phrase; row 0 is the top.
POSITIONS = {(0, 0): "top left", (0, 1): "top", (0, 2): "top right", (1, 0): "left", (1, 1): "center",
             (1, 2): "right", (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right"}
POSITIONS_ZH = {(0, 0): "左上方", (0, 1): "上方", (0, 2): "右上方", (1, 0): "左侧", (1, 1): "中间",
                (1, 2): "右侧", (2, 0): "左下方", (2, 1): "下方", (2, 2): "右下方"}
ATTRIBUTES = ("color", "shape", "size", "position")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    cell: tuple[int, int]

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


def scene_objects(row: dict[str, object], where: str, needed_by: str) -> list[SceneObject]:
    """A manifest row's `objects` field as `SceneObject`s, or a ValueError naming the row."""
    objs = row.get("objects")
    if not isinstance(objs, list) or not objs:
        raise ValueError(f"{where}: field 'objects' missing or empty; {needed_by} need a scenes manifest "
                         "(crossalign data make scenes)")
    try:
        return [SceneObject(o["shape"], o["color"], o["size"], (int(o["cell"][0]), int(o["cell"][1]))) for o in objs]
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{where}: malformed 'objects' entry ({e})") from e


def sample_scene(rng: random.Random) -> list[SceneObject]:
    n = rng.choice((1, 2, 2, 3, 3))
    cells = rng.sample(sorted(POSITIONS), n)
    objs = [SceneObject(rng.choice(SHAPES), rng.choice(list(COLORS)), rng.choice(SIZES), c) for c in cells]
    return sorted(objs, key=lambda o: o.cell)  # reading order: captions list objects top-left first


def _phrase(o: SceneObject) -> str:
    where = "in the center" if o.cell == (1, 1) else (f"on the {o.position}" if o.cell[0] == 1 else f"at the {o.position}")
    return f"a {o.size} {o.color} {o.shape} {where}"


def caption_en(objs: list[SceneObject]) -> str:
    parts = [_phrase(o) for o in objs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_zh(objs: list[SceneObject]) -> str:
    return "，".join(f"{POSITIONS_ZH[o.cell]}有一个{SIZES_ZH[o.size]}{COLORS_ZH[o.color]}{SHAPES_ZH[o.shape]}" for o in objs)


def hard_negative(objs: list[SceneObject], rng: random.Random) -> tuple[list[SceneObject], str]:
    """Swap exactly one attribute of one object; the result is a different, valid scene."""
    i = rng.randrange(len(objs))
    o = objs[i]
    attr = rng.choice(ATTRIBUTES)
    if attr == "color":
        new = SceneObject(o.shape, rng.choice([c for c in COLORS if c != o.color]), o.size, o.cell)
    elif attr == "shape":
        new = SceneObject(rng.choice([s for s in SHAPES if s != o.shape]), o.color, o.size, o.cell)
    elif attr == "size":
        new = SceneObject(o.shape, o.color, "large" if o.size == "small" else "small", o.cell)
    else:
        free = [c for c in POSITIONS if c not in {p.cell for p in objs}]
        new = SceneObject(o.shape, o.color, o.size, rng.choice(free))
    out = sorted(objs[:i] + [new] + objs[i + 1:], key=lambda p: p.cell)
    return out, attr
