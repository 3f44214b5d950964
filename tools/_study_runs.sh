# The run loop and the tables of the studies (tools/zcontext_study.sh, tools/deeplesion_study.sh); sourced by them
# from the repository root, not run on its own.
#
# study_runs KIND TEST_SET TRAIN_SET TRAIN_ITEMS [KEY VALUE ...]
#   For each seed of $SEEDS and each run of $RUNS, in $OUT/<run>_s<seed>: trains the run (train_net.py --resume, so
#   an interrupted run resumes) unless its model_final.pth and its TEST_SET evaluation exist, then, unless done, the
#   collapse check: the run's model evaluated on TRAIN_SET (--eval-only; TRAIN_ITEMS names what it holds, for the
#   line announcing it). Then prints the table of the TEST_SET evaluations and that of the TRAIN_SET ones
#   (tools/study_table.py, mean ± std over seeds), written to $OUT/study.json and $OUT/study_train.json.
#   KIND: lits or deeplesion, the evaluator's kind (<KIND>_summary.json, study_table.py --kind). KEY VALUE: config
#   overrides for every run, last on each train_net.py command line.
# Reads the caller's PY (the python), OUT, SEEDS, RUNS, CONFIG (run -> config file; DEFAULT_CONFIG for a run not
# in it, when set), LABEL (run -> its row in the tables) and, when set, TABLE_ARGS (an array of further
# study_table.py arguments for the TEST_SET table). When the caller defines run_opts, ``run_opts RUN`` prints the
# run's own config overrides (they go before KEY VALUE and into the run's "==" line); when it defines after_run,
# ``after_run RUN RUN_DIR`` is called once the run's evaluations exist (a study's record of every run).

study_runs() {
    local kind=$1 test_set=$2 train_set=$3 train_items=$4
    shift 4
    local summary=${kind}_summary.json seed name dir config opts dirs specs=()
    for seed in $SEEDS; do
        for name in $RUNS; do
            dir="$OUT/${name}_s$seed"
            config=${CONFIG[$name]:-${DEFAULT_CONFIG:-}}
            opts=""
            if declare -F run_opts > /dev/null; then
                opts=$(run_opts "$name")
            fi
            if [ ! -f "$dir/model_final.pth" ] || [ ! -f "$dir/inference/$test_set/$summary" ]; then
                if declare -F run_opts > /dev/null; then
                    echo "== $name, SEED $seed ${opts:+($opts)}"
                else
                    echo "== $name, SEED $seed"
                fi
                # shellcheck disable=SC2086
                $PY projects/VolumetricAttention/train_net.py --config-file "$config" --resume \
                    OUTPUT_DIR "$dir" SEED "$seed" $opts "$@"
            fi
            if [ ! -f "$dir/inference/$train_set/$summary" ]; then
                echo "== $name, SEED $seed: the collapse check on its own $train_items"
                # shellcheck disable=SC2086
                $PY projects/VolumetricAttention/train_net.py --config-file "$config" --eval-only \
                    OUTPUT_DIR "$dir" SEED "$seed" $opts "$@" MODEL.WEIGHTS "$dir/model_final.pth" \
                    DATASETS.TEST "(\"$train_set\",)" > /dev/null
            fi
            if declare -F after_run > /dev/null; then
                after_run "$name" "$dir"
            fi
        done
    done
    for name in $RUNS; do
        dirs=""
        for seed in $SEEDS; do dirs="${dirs:+$dirs,}$OUT/${name}_s$seed"; done
        specs+=("${LABEL[$name]}=$dirs")
    done
    local kind_args=()  # lits is study_table.py's default
    [ "$kind" = lits ] || kind_args=(--kind "$kind")
    $PY tools/study_table.py "${specs[@]}" "${kind_args[@]}" ${TABLE_ARGS[@]+"${TABLE_ARGS[@]}"} \
        --json "$OUT/study.json"
    $PY tools/study_table.py "${specs[@]}" "${kind_args[@]}" --dataset "$train_set" --json "$OUT/study_train.json"
}
