"""Names shared by every part of bikestate: the 22 DelftBikes parts and the 4 part states.

The part names are the DelftBikes annotation keys in their release order, original spellings
kept (``back_hand_break``, ``front_handbreak``): they are what users' files contain. COCO
``category_id`` is the index in :data:`PART_NAMES` plus one; detectron2's contiguous class id is
the index itself.
"""

PART_NAMES = (
    "back_hand_break",
    "back_handle",
    "back_light",
    "back_mudguard",
    "back_pedal",
    "back_reflector",
    "back_wheel",
    "bell",
    "chain",
    "dress_guard",
    "dynamo",
    "front_handbreak",
    "front_handle",
    "front_light",
    "front_mudguard",
    "front_pedal",
    "front_wheel",
    "gear_case",
    "kickstand",
    "lock",
    "saddle",
    "steer",
)

# State ids: the value of DelftBikes' ``object_state_class`` and of the COCO ``state`` field.
STATE_NAMES = ("intact", "damaged", "absent", "occluded")
STATE_INTACT, STATE_DAMAGED, STATE_ABSENT, STATE_OCCLUDED = range(4)
STATE_IDS = {name: i for i, name in enumerate(STATE_NAMES)}

# Verdict of the verification view and of the inspection report when no detection was found.
NOT_FOUND = "not_found"

# Colours (RGB, 0-1) per state, shared by the visualizer, the W&B overlays and the plots.
STATE_COLORS = (
    (0.18, 0.74, 0.29),  # intact: green
    (0.90, 0.12, 0.12),  # damaged: red
    (0.98, 0.62, 0.05),  # absent: orange
    (0.25, 0.45, 0.95),  # occluded: blue
)
