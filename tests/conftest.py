from pathlib import Path

import numpy as np
import pytest

from hires import process

# the tests drive the engine and kernels directly, in the process settings a render runs with
process.tune_for_rendering()

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "hires" / "data"


def data(rel: str, bundled: str | None = None) -> Path:
    """A test image from ../shared/data, else the copy bundled in the package."""
    p = SHARED / rel
    if p.exists():
        return p
    if bundled is not None:
        return BUNDLED / bundled
    pytest.skip(f"{p} not available")


@pytest.fixture
def content_path():
    return data("contents/chelsea.png", "chelsea.png")


@pytest.fixture
def style_path():
    return data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")


@pytest.fixture
def texture_path():
    return data("textures/stone_bricks_ambientcg_bricks102.jpg", "stone_bricks_ambientcg_bricks102.jpg")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def _session_cost_cache(tmp_path_factory):
    """One tile-cost cache for the whole run, as a user's machine keeps one: a render or plan in a
    test probes a tile shape the first time it meets it, not in every test (the probes took about
    a fifth of the suite: 13 min 37 s against 10 min 56 s on a 2-core Xeon).  Costs only set
    estimates, never what is rendered."""
    return tmp_path_factory.mktemp("hires-cache")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch, _session_cost_cache):
    """No test sees real weights or writes into the user's torch or hires cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HIRES_CACHE_DIR", str(_session_cost_cache))  # measured tile costs
    monkeypatch.delenv("HIRES_WEIGHTS", raising=False)


@pytest.fixture
def fresh_cost_cache(tmp_path, monkeypatch):
    """An empty tile-cost cache of the test's own, for tests of measuring and caching itself."""
    monkeypatch.setenv("HIRES_CACHE_DIR", str(tmp_path / "hires-cache"))
    return tmp_path / "hires-cache"


FAST = dict(base_size=64, iterations=(6,), style_layers=("relu1_1", "relu2_1", "relu3_1"),
            content_layer="relu3_1", memory="8GiB", init="content")


# The tests that take about 2 s or more each (from `pytest --durations=60`): renders in a subprocess,
# float64 gradients, measured peaks, clusters.  Marked slow, so that `make test-fast` leaves them out.
SLOW = {
    "test_a_16_bit_bomb_is_read_shrunk_inside_the_budget",
    "test_a_disk_backed_canvas_is_read_without_becoming_resident",
    "test_a_worker_killed_mid_tile_does_not_change_the_render",
    "test_bad_input_from_a_real_process",
    "test_batch_changed_job_is_not_skipped_and_never_overwrites",
    "test_batch_on_a_cluster_reports_like_the_local_batch",
    "test_batch_runs_the_rest_reports_and_skips_on_rerun",
    "test_changed_settings_start_fresh_and_fresh_flag",
    "test_cluster_render_equals_the_in_process_render",
    "test_cluster_seams_match_the_sequential_render",
    "test_detail_noise_brings_back_the_examples_fine_contrast",
    "test_example_scale_sets_the_size_of_the_features",
    "test_fast_method_from_the_command_line",
    "test_fast_method_killed_while_writing_leaves_nothing_after_a_rerun",
    "test_gray_example_gives_a_gray_one_band_texture",
    "test_importing_the_kernels_and_building_an_engine_change_no_process_setting",
    "test_json_progress_and_snapshots",
    "test_json_progress_reports_an_error_as_json",
    "test_mean_weight_pulls_feature_means_to_the_style",
    "test_measured_peak_memory_of_a_tiled_render_matches_the_plan",
    "test_mode_gray_writes_one_band_16_bit",
    "test_no_seams_along_tile_boundaries",
    "test_plan_command_json",
    "test_plan_command_text_and_impossible_budget",
    "test_plan_of_a_fast_render",
    "test_planner_moves_buffers_to_disk_when_ram_does_not_fit",
    "test_print_size_pixels_and_physical_size_in_the_tiff",
    "test_render_command_writes_the_file",
    "test_resume_from_every_level_equals_an_uninterrupted_render",
    "test_seamless_example_statistics_equal_the_whole_example",
    "test_seamless_texture_shows_no_seam_where_it_wraps",
    "test_seamless_texture_wraps",
    "test_second_pass_refines_every_tile_again_on_a_shifted_grid",
    "test_several_examples_mix_by_weight",
    "test_sigkill_then_rerun_equals_uninterrupted",
    "test_texture_command_and_quiet",
    "test_texture_resembles_example",
    "test_texture_takes_the_examples_colour_statistics",
    "test_the_command_and_the_package_import_without_torch",
    "test_the_work_state_cannot_make_hires_delete_a_file",
    "test_tile_gradients_sum_to_the_whole_image_gradient",
    "test_tiled_render_matches_untiled_render",
    "test_weights_are_not_verified_by_their_own_name",
    "test_weights_status_command",
    "test_weights_with_bad_values_are_refused_in_one_line",
    "test_wrap_around_tiles_are_refined",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.originalname in SLOW:
            item.add_marker(pytest.mark.slow)
