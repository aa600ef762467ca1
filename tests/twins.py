"""The long tests and their quick twins.

A test measured at 8 s or more (tests/durations.json, ``make durations``) is marked long: ``make
test`` leaves it out, ``make test-long`` runs it, and CI runs both.  Each is listed here with its
quick twin in ``make test`` (the same claim at a size that runs in seconds, or its mechanism
measured directly) and the defect planted to see the twin fail.  tests/test_layout.py fails when a
test measured long is not listed with a twin: crossing the line is decided here, never a silent
drop from ``make test``.
"""

# long test (file::function) -> (its quick twin (file::function), the defect planted to see the twin fail)
TWINS: dict[str, tuple[str, str]] = {
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
        "tests/test_tiled.py::test_each_tile_reads_the_tiles_before_it_and_the_whole_images_statistics_quick",
        "the tiles given a snapshot of the canvas taken before the pass (refine_pass); the statistics of the "
        "first tile alone (refine_pass's stats_pass over tiles[:1])"),
    "tests/test_tiles.py::test_measured_peak_memory_of_a_tiled_render_matches_the_plan": (
        "tests/test_tiles.py::test_a_tiled_levels_measured_memory_matches_its_plan_quick",
        "MobileNetV2's part of a tile counted at half its size (memory.PART_FACTOR: measured 1.59x the plan)"),
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
    "tests/test_texture.py::test_wrap_around_tiles_are_refined": (
        "tests/test_texture.py::test_wrap_around_tiles_are_refined_quick",
        "the tiles whose blend area runs past an edge skipped (refine_pass)"),
    # the cluster
    "tests/test_cluster.py::test_cluster_render_equals_the_in_process_render": (
        "tests/test_cluster.py::test_a_render_through_a_dask_client_equals_the_in_process_render_quick",
        "a worker not sent the tile's content (cluster.DaskRunner.refine_runs)"),
    # the studio
    "tests/test_serve.py::test_a_restarted_server_resumes_the_render_it_was_killed_in": (
        "tests/test_serve.py::test_a_restarted_server_queues_again_what_was_queued_or_running_quick",
        "Runner.restore leaving a running job's record as it was"),
    "tests/test_serve.py::test_an_optimised_render_shows_its_levels_live_and_can_be_cancelled": (
        "tests/test_serve.py::test_a_queued_job_is_cancelled_and_a_running_render_interrupted_quick",
        "Runner.cancel not signalling the running render"),
    "tests/test_serve.py::test_concurrent_submissions_queue_and_render_one_at_a_time": (
        "tests/test_serve.py::test_concurrent_submissions_queue_and_render_one_at_a_time_quick",
        "Runner.run_forever starting every queued job at once (not awaiting the one that runs)"),
    "tests/test_serve.py::test_previews_and_plans_asked_together_leave_the_server_running": (
        "tests/test_serve.py::test_previews_and_plans_asked_together_run_one_at_a_time_quick",
        "a plan resolved outside the compute lock (serve._resolve)"),
    # the command line
    "tests/test_cli.py::test_plan_command_text_and_impossible_budget": (
        "tests/test_cli.py::test_plan_command_text_and_impossible_budget_quick",
        "a budget error not caught by the command (a traceback); the planner's too-small check removed"),
}

# categories `make test` runs whatever their time (the studio's page has no other check)
ALWAYS_RUN = ("tests/test_browser.py::",)
