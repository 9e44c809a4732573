"""The private pool of column players the submission is scored against (history: (own, other) pairs)."""


def always_cooperate(history, rng):
    return 0


def always_defect(history, rng):
    return 1


def tit_for_tat(history, rng):
    return history[-1][1] if history else 0


def suspicious_tit_for_tat(history, rng):
    return history[-1][1] if history else 1


def tit_for_two_tats(history, rng):
    return int(len(history) >= 2 and history[-1][1] == 1 and history[-2][1] == 1)


def grim_trigger(history, rng):
    return int(any(other == 1 for _, other in history))


def pavlov(history, rng):
    """Win-stay, lose-shift: repeat the last move after a payoff of 3 or 5, switch after 0 or 1."""
    if not history:
        return 0
    own, other = history[-1]
    return own if other == 0 else 1 - own


def random_player(history, rng):
    return int(rng.random() < 0.5)


def mostly_cooperate(history, rng):
    return int(rng.random() < 0.1)


def generous_tit_for_tat(history, rng):
    if history and history[-1][1] == 1:
        return int(rng.random() >= 0.3)
    return 0


def prober(history, rng):
    """Defects, cooperates twice, then exploits a partner that never retaliated, else plays tit for tat."""
    if len(history) < 3:
        return (1, 0, 0)[len(history)]
    if history[1][1] == 0 and history[2][1] == 0:
        return 1
    return history[-1][1]


def alternator(history, rng):
    return len(history) % 2


POOL = {f.__name__: f for f in (always_cooperate, always_defect, tit_for_tat, suspicious_tit_for_tat,
                                tit_for_two_tats, grim_trigger, pavlov, random_player, mostly_cooperate,
                                generous_tit_for_tat, prober, alternator)}
