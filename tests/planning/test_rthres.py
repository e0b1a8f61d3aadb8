from hprune.planning.rthres import best_r_thres


def test_least_val_loss_wins_and_ties_go_to_the_larger_switch_point():
    rows = [{"r_thres": 0.25, "val_degradation": 0.6}, {"r_thres": 0.125, "val_degradation": 0.3},
            {"r_thres": 0.1, "val_degradation": 0.3}, {"r_thres": 0.01, "val_degradation": 0.35}]
    assert best_r_thres(rows) == 0.125
