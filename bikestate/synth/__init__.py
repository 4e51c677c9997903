"""SynthBikes: procedural side-view bicycles with all 22 DelftBikes parts and their states.

The real DelftBikes photos cannot be fetched where bikestate is built and tested, so the demo, the
tests and the benchmarks run on this generator. Its output has the exact DelftBikes input format
(``images/*.jpg`` + ``annotations.json`` keyed by file name, see :mod:`bikestate.data.delftbikes`),
so every later stage (validation, COCO conversion, split, registration) runs on it unchanged.

How a picture is made (:func:`render_bike`), one module per step:

1. A bike is laid out in a canonical frame: wheel radius 1, back axle at the origin, facing
   +x, y pointing down, the ground at y = 1. Frame geometry (wheelbase, angles, tube lengths,
   frame style, rack) is sampled per image. Every part is a list of drawing primitives
   (polylines, filled polygons, circles) in that frame.
2. Every part draws a state from ``state_probs``. ``damaged`` parts are built from a broken
   variant of their geometry (bent rim and missing spokes, cracked lens, torn saddle, snapped
   lever...), ``absent`` parts keep the geometry of the intact part for their box but are not
   drawn, ``occluded`` parts are drawn and then covered by an occluder over >= 40% of their box.
3. The bike is scaled (a third of the image width up to slightly cropped at the border), mirrored
   when it faces left, placed, and drawn with OpenCV over a procedural background; then lighting,
   blur and noise are applied. Boxes are the bounds of the drawn primitives (of the would-be
   primitives for absent parts), clipped to the image.

``back_*`` / ``front_*`` name the bike's back and front, not the image's left and right: a bike
facing left has its front wheel on the left. Of the two grips, levers and pedals seen from the
side, ``front_*`` is the one nearer the bike's front.

Everything is drawn from one ``numpy.random.Generator``; :func:`generate_synthbikes` derives it
from ``(seed, image index)``, so images do not depend on generation order and a seed always gives
byte-identical JSON and identical pixels.

Modules: :mod:`.geometry` (canonical-frame helpers), :mod:`.drawing` (primitives, placement,
colours), :mod:`.parts` (layout and one builder per part), :mod:`.scene` (background, lighting),
:mod:`.occlusion` (occluders), :mod:`.render` (one picture), :mod:`.generate` (a dataset on disk).
OpenCV is imported with this package; ``bikestate.data`` imports it only where SynthBikes is used.
"""
from .generate import SYNTH_VERSIONS, generate_synthbikes
from .occlusion import MIN_OCCLUDED_COVERAGE
from .render import DEFAULT_STATE_PROBS, SYNTH_STYLES, check_state_probs, render_bike, \
    state_probs_label

__all__ = ["DEFAULT_STATE_PROBS", "MIN_OCCLUDED_COVERAGE", "SYNTH_STYLES", "SYNTH_VERSIONS",
           "check_state_probs", "generate_synthbikes", "render_bike", "state_probs_label"]
