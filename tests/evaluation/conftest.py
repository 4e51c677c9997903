"""Fixtures of the evaluation tests: small hand-built bike datasets, registered and removed."""
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from eval_cases import make_outputs, register_bike_json, write_coco_with_states


@pytest.fixture
def bike_dataset(tmp_path):
    """Factory ``(parts, images, annotations) -> dataset name``: writes, registers, cleans up."""
    names = []

    def make(parts, images, annotations):
        json_file = write_coco_with_states(str(tmp_path / f"gt{len(names)}.json"), parts, images,
                                           annotations)
        names.append(register_bike_json(json_file))
        return names[-1]

    yield make
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def model_output():
    """:func:`make_outputs` as a fixture (tests cannot import conftest reliably)."""
    return make_outputs
