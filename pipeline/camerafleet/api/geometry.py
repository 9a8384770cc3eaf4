"""Zones and lines in frame pixels: which shapes a manifest may hold, and where a point is relative to them.

Pure Python (the manifest validates with it, and the events stage decides with it), so the rule for what a
valid polygon is and the rule for which side of a line a point is on each live in one place.
Coordinates are pixels of the camera's frame, x to the right and y down, as detections' boxes are.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2


class Anchor(StrEnum):
    """The point of a box that stands for the object in zones and on lines."""

    BOTTOM_CENTER = "bottomCenter"  # where a person or vehicle stands: what a zone drawn on the floor means
    CENTER = "center"  # faces, and objects seen from above

    def of(self, box: Box) -> Point:
        x1, y1, x2, y2 = box
        return ((x1 + x2) / 2, y2 if self is Anchor.BOTTOM_CENTER else (y1 + y2) / 2)


MIN_POLYGON_AREA = 16.0  # px²: a zone smaller than 4 x 4 pixels is a typo, not a place
MIN_LINE_LENGTH = 4.0  # px


def cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o): positive when o -> a -> b turns clockwise on screen (y points down)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def polygon_area(points: Sequence[Point]) -> float:
    """Absolute area (shoelace)."""
    n = len(points)
    return abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))) / 2


def segments_intersect(p: Point, q: Point, a: Point, b: Point) -> bool:
    """Whether segments p-q and a-b cross or touch."""
    d1, d2, d3, d4 = cross(a, b, p), cross(a, b, q), cross(p, q, a), cross(p, q, b)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True

    def on(o: Point, s: Point, e: Point) -> bool:  # o collinear with s-e and between them
        return min(s[0], e[0]) <= o[0] <= max(s[0], e[0]) and min(s[1], e[1]) <= o[1] <= max(s[1], e[1])

    return (d1 == 0 and on(p, a, b)) or (d2 == 0 and on(q, a, b)) or (d3 == 0 and on(a, p, q)) or (d4 == 0 and on(b, p, q))


def polygon_problem(points: Sequence[Point], width: int | None = None, height: int | None = None) -> str | None:
    """What is wrong with a zone's polygon, or None: at least 3 points, inside the frame when its size is known,
    edges that do not cross each other (a bow tie has no inside), and an area of at least `MIN_POLYGON_AREA`."""
    if len(points) < 3:
        return f"a polygon needs at least 3 points, got {len(points)}"
    if width is not None and height is not None:
        outside = [p for p in points if not (0 <= p[0] <= width and 0 <= p[1] <= height)]
        if outside:
            return f"point {list(outside[0])} is outside the {width}x{height} frame"
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a corner
            if segments_intersect(*edges[i], *edges[j]):
                return f"edges {i + 1} and {j + 1} cross each other; list the points in order around the zone"
    if polygon_area(points) < MIN_POLYGON_AREA:
        return f"the polygon's area is {polygon_area(points):g} px², below {MIN_POLYGON_AREA:g} (points on one line, or repeated)"
    return None


def line_problem(a: Point, b: Point, width: int | None = None, height: int | None = None) -> str | None:
    """What is wrong with a line, or None: inside the frame when its size is known, at least `MIN_LINE_LENGTH` long."""
    if width is not None and height is not None:
        for p in (a, b):
            if not (0 <= p[0] <= width and 0 <= p[1] <= height):
                return f"point {list(p)} is outside the {width}x{height} frame"
    if ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5 < MIN_LINE_LENGTH:
        return f"the line is shorter than {MIN_LINE_LENGTH:g} px"
    return None


def inside(p: Point, polygon: Sequence[Point]) -> bool:
    """Whether p is inside the polygon (even-odd rule; a point on an edge may go either way)."""
    x, y = p
    result = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def side(p: Point, a: Point, b: Point, margin: float = 0.0) -> int:
    """Which side of the directed line a -> b the point is on: +1 on its right as seen on screen (walking from
    a to b), -1 on its left, 0 within `margin` pixels of the line (undecided)."""
    length = ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
    distance = cross(a, b, p) / length if length else 0.0
    if abs(distance) <= margin:
        return 0
    return 1 if distance > 0 else -1
