"""The Automated LLM Speedrunning Benchmark over this codebase's record ladder (configs/speedrun/).

Each task asks an agent to turn record i's training into record i+1's speedup, optionally helped by hints at
three levels (pseudocode, a text description, a mini-paper; `hints`). The pieces:

- `specialize` / `workspace`: record i's editable code (the project's model, loss and optimizer with every
  later record's switch folded away) and its proxy-scale config;
- `runner`: trains a workspace with the project's trainer under the fixed proxy settings;
- `evaluation`: a task's evaluator (costs to the target: train seconds, steps, tokens);
- `tasks`: the proxy (`Proxy`, gin `speedrun_proxy`) and the task folders the research agent runs.
"""
