"""BikeStateEvaluator in a real 2-process GLOO run: results gathered to rank 0 equal one process."""
import json
import math

from detectron2.engine import launch
from detectron2.utils import comm

from eval_cases import DETS, GT, PARTS, make_outputs, register_bike_json, run_evaluator
from eval_cases import write_coco_with_states

from bikestate.engine.distributed import process_group_teardown
from bikestate.evaluation import BikeStateEvaluator


def _worker(json_file, result_file):
    """Each rank processes every other image; rank 0 writes what evaluate() returns."""
    with process_group_teardown():
        _evaluate_shard(json_file, result_file)


def _evaluate_shard(json_file, result_file):
    name = register_bike_json(json_file, name="eval_test_distributed")
    evaluator = BikeStateEvaluator(name, distributed=True)
    evaluator.reset()
    for image_id in sorted(DETS)[comm.get_rank()::comm.get_world_size()]:
        inp, out = make_outputs(image_id, DETS[image_id])
        evaluator.process([inp], [out])
    results = evaluator.evaluate()
    if comm.is_main_process():
        with open(result_file, "w") as f:
            json.dump(results, f)
    else:
        assert results == {}


def test_two_processes_match_one(tmp_path, bike_dataset):
    json_file = write_coco_with_states(str(tmp_path / "gt.json"), PARTS, [1, 2, 3], GT)
    result_file = str(tmp_path / "results.json")
    launch(_worker, 2, dist_url="auto", args=(json_file, result_file))
    with open(result_file) as f:
        gathered = json.load(f)

    expected = run_evaluator(bike_dataset(PARTS, [1, 2, 3], GT), DETS)
    assert set(gathered) == set(expected)
    for task, values in expected.items():
        assert set(gathered[task]) == set(values), task
        for key, value in values.items():
            got = gathered[task][key]
            assert (math.isnan(value) and (got is None or math.isnan(got))) or got == value, key
