"""The long tests and their quick twins.

A test measured at 8 s or more (tests/durations.json, ``make durations``) is marked long: ``make
test`` leaves it out, ``make test-long`` runs it, and CI runs both.  Each is listed here with its
quick twin in ``make test`` (the same claim at a size that runs in seconds) and the defect planted
to see the twin fail, or with None where it has none yet (said in the summary of every run).
tests/test_layout.py fails when a test measured long is not listed: crossing the line is decided
here, never a silent drop from ``make test``.
"""

# long test (file::function) -> (its quick twin (file::function), the defect planted to see the twin fail)
TWINS: dict[str, tuple[str | None, str]] = {
    # the tiled engine's exactness
    "tests/test_gradient.py::test_tile_gradients_sum_to_the_whole_image_gradient": (
        "tests/test_gradient.py::test_tile_gradients_sum_to_the_whole_image_gradient_quick",
        "a tile's share of the whole image's Gram miscounted by 10% (losses.LayerStyleLoss.of_sums)"),
    "tests/test_gradient.py::test_tile_gradients_with_style_regions_sum_to_the_whole_image_gradient": (
        "tests/test_gradient.py::test_tile_gradients_with_style_regions_sum_to_the_whole_image_gradient_quick",
        "the same miscount"),
    "tests/test_tiled.py::test_tiled_render_matches_untiled_render": (
        "tests/test_tiled.py::test_tiled_render_matches_untiled_render_quick",
        "each tile's result blended 8 px off its place (a parameter of the twin)"),
    "tests/test_tiled.py::test_no_seams_along_tile_boundaries": (
        None, "below 384 px the seam measure does not separate the engine from its broken variants"),
    "tests/test_tiles.py::test_measured_peak_memory_of_a_tiled_render_matches_the_plan": (
        None, "a render that fits a small budget takes 10 s (48 tiles of 128 px: issue 62's cliff)"),
    "tests/test_tiles.py::test_measured_costs_are_cached_per_machine_and_a_bad_cache_is_ignored": (None, ""),
    "tests/test_options.py::test_second_pass_refines_every_tile_again_on_a_shifted_grid": (None, ""),
    "tests/test_io.py::test_a_disk_backed_canvas_is_read_without_becoming_resident": (None, ""),
    # resume and production
    "tests/test_production.py::test_sigkill_then_rerun_equals_uninterrupted": (
        "tests/test_production.py::test_an_interrupted_tiled_level_resumes_from_its_saved_tiles_quick",
        "the saved tiles not restored (Checkpoints.restore_tiles returning none)"),
    "tests/test_production.py::test_a_damaged_tile_checkpoint_is_rendered_again": (
        "tests/test_production.py::test_restoring_tiles_stops_at_a_damaged_one_and_names_it",
        "restore_tiles catching only OSError, ValueError and KeyError (as before: a BadZipFile escaped)"),
    "tests/test_production.py::test_changed_settings_start_fresh_and_fresh_flag": (
        "tests/test_production.py::test_changed_settings_start_fresh_and_fresh_flag_quick",
        "another render's work folder never seen as stale (Checkpoints.stale always False)"),
    "tests/test_production.py::test_json_progress_and_snapshots": (
        "tests/test_production.py::test_json_progress_and_snapshots_quick",
        "no picture when the first level ends (Snapshots.level_done skipping level 0)"),
    "tests/test_production.py::test_batch_runs_the_rest_reports_and_skips_on_rerun": (
        "tests/test_production.py::test_batch_runs_the_rest_skips_on_rerun_and_never_overwrites_quick",
        "a finished job never recognised (batch.already_done always False)"),
    "tests/test_production.py::test_batch_changed_job_is_not_skipped_and_never_overwrites": (
        "tests/test_production.py::test_batch_runs_the_rest_skips_on_rerun_and_never_overwrites_quick",
        "a changed job's fingerprint taken as the old one (batch.already_done ignoring the fingerprint)"),
    "tests/test_hostile.py::test_a_16_bit_bomb_is_read_shrunk_inside_the_budget": (
        "tests/test_hostile.py::test_a_16_bit_bomb_is_read_shrunk_inside_the_budget_quick",
        "the bomb decoded whole and then resized (the same measure: 231 MiB)"),
    "tests/test_hostile.py::test_fast_method_killed_while_writing_leaves_nothing_after_a_rerun": (None, ""),
    "tests/test_stylefit.py::test_a_fit_holds_its_budget_beside_a_huge_sparse_photo": (
        "tests/test_stylefit.py::test_a_fits_key_hashes_its_photos_as_streams_quick",
        "fit_key reading each photo whole to hash it (as before)"),
    # textures
    "tests/test_texture.py::test_seamless_texture_shows_no_seam_where_it_wraps": (
        "tests/test_texture.py::test_seamless_texture_shows_no_seam_where_it_wraps_quick",
        "the texture made without the wrap (a parameter of the twin)"),
    "tests/test_texture.py::test_example_scale_sets_the_size_of_the_features": (
        "tests/test_texture.py::test_example_scale_sets_the_size_of_the_features_quick",
        "the example scale ignored (a parameter of the twin)"),
    "tests/test_texture.py::test_wrap_around_tiles_are_refined": (None, ""),
    "tests/test_texture.py::test_detail_noise_brings_back_the_examples_fine_contrast": (None, ""),
    # the cluster
    "tests/test_cluster.py::test_cluster_render_equals_the_in_process_render": (
        "tests/test_cluster.py::test_a_render_through_a_dask_client_equals_the_in_process_render_quick",
        "a worker not sent the tile's content (cluster.DaskRunner.refine_runs)"),
    "tests/test_cluster.py::test_a_worker_killed_mid_tile_does_not_change_the_render": (None, ""),
    "tests/test_cluster.py::test_batch_on_a_cluster_reports_like_the_local_batch": (None, ""),
    # the studio
    "tests/test_serve.py::test_a_restarted_server_resumes_the_render_it_was_killed_in": (
        "tests/test_serve.py::test_a_restarted_server_queues_again_what_was_queued_or_running_quick",
        "Runner.restore leaving a running job's record as it was"),
    "tests/test_serve.py::test_an_optimised_render_shows_its_levels_live_and_can_be_cancelled": (
        "tests/test_serve.py::test_a_queued_job_is_cancelled_and_a_running_render_interrupted_quick",
        "Runner.cancel not signalling the running render"),
    "tests/test_serve.py::test_concurrent_submissions_queue_and_render_one_at_a_time": (None, ""),
    "tests/test_serve.py::test_previews_and_plans_asked_together_leave_the_server_running": (None, ""),
    # the command line
    "tests/test_cli.py::test_fast_method_from_the_command_line": (None, ""),
    "tests/test_cli.py::test_plan_command_text_and_impossible_budget": (None, ""),
    "tests/test_cli.py::test_texture_command_and_quiet": (None, ""),
}

# categories `make test` runs whatever their time (the studio's page has no other check)
ALWAYS_RUN = ("tests/test_browser.py::",)
