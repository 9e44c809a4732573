"""NetHack for MaestroMotif (NLE 1.3): the monk game and its observations (`env`), Motif captions (`captions`),
task success detectors (`detectors`) and batched stepping over worker processes (`vector`)."""
