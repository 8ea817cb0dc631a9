"""The benchmarks' summaries of measured runs."""

from local.stats import median_run


def test_median_run_is_the_middle_run_with_every_value_in_running_order():
    runs = [{"wall_s": 25.2, "id": "a"}, {"wall_s": 23.6, "id": "b"}, {"wall_s": 24.8, "id": "c"}]
    assert median_run(runs, "wall_s") == {"wall_s": 24.8, "id": "c", "wall_s_each": [25.2, 23.6, 24.8]}


def test_median_run_of_an_even_count_is_the_upper_middle_and_of_one_run_that_run():
    runs = [{"t": 2.0}, {"t": 1.0}]
    assert median_run(runs, "t") == {"t": 2.0, "t_each": [2.0, 1.0]}
    assert median_run([{"t": 3.0}], "t") == {"t": 3.0, "t_each": [3.0]}
