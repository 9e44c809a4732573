"""Reinforcement learning: PPO as pure functions (ppo), actor-critic networks (networks), the fully jitted
loop for JAX environments (purejax) and a rollout buffer for host-side environments such as NetHack (rollout).
"""
