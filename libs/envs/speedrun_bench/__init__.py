"""The Automated LLM Speedrunning Benchmark over this codebase's record ladder (configs/speedrun/): each task
asks an agent to turn record i's training setup into record i+1's, optionally helped by hints at three levels
(pseudocode, a text description, a mini-paper) describing that change as this codebase implements it; the
hints and their loader (`hints.py`, texts under `hints/`) are here now, the per-task workspaces are to come."""
