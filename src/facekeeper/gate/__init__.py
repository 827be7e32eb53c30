"""Gate mode: a camera stream → face tracks → best frames → one decision per pass → a door output.

One module per job: ``source`` (decode a camera or file, reconnect), ``tracking`` (faces across frames),
``selection`` (the best few frames of each track), ``decision`` (the vote and the door rules), ``doors`` (what
tells the controller), ``runner`` (the loop and its metrics). Frames live in memory only; the decision itself
is made by ``Service.gate_decide``, through the guard, so every door decision is audited exactly once.
"""
