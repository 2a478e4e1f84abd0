import numpy as np
from shapely.geometry import Polygon, box

from cytofm.data.annotations.geojson import annotation_feature, cell_feature, write_feature_collection
from cytofm.data.annotations.regions import (
    class_matches,
    coverage_of_boxes,
    find_regions,
    read_voc_boxes,
    regions_mask,
)


def _voc(path, boxes):
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in boxes)
    path.write_text(f"<annotation>{objs}</annotation>")


def test_integer_box_polygon_gives_the_box_pixels_and_polygons_their_own():
    b = [3, 5, 17, 11]
    assert (regions_mask([box(*b)], (20, 30)) == regions_mask([np.array(b, float)], (20, 30))).all()
    assert regions_mask([box(*b)], (20, 30)).sum() == 14 * 6
    tri = regions_mask([Polygon([(0, 0), (10, 0), (0, 10)])], (10, 10))
    # pixel centres on or under the diagonal: 10 + 9 + ... + 1
    assert tri.sum() == 55 and tri[0, 0] and tri[0, 9] and not tri[9, 9]
    assert not regions_mask([box(50, 50, 60, 60)], (10, 10)).any()  # off the image


def test_find_regions_reads_voc_and_qupath_with_the_class_filter(tmp_path):
    _voc(tmp_path / "a.xml", [("WBC", (1, 2, 3, 4)), ("RBC", (0, 0, 5, 5))])
    write_feature_collection(tmp_path / "b.geojson", [
        annotation_feature(box(0, 0, 10, 10), classification="wbc"),
        cell_feature(box(20, 20, 30, 30), box(22, 22, 25, 25), classification="WBC: Neutrophil"),
        annotation_feature(box(40, 40, 50, 50), classification="RBC"),
        annotation_feature(box(60, 60, 70, 70))])
    (voc,) = find_regions(tmp_path, "imgs/a.png", "WBC")
    assert voc.tolist() == read_voc_boxes(tmp_path / "a.xml")[0][1].tolist()  # as before: an array
    got = find_regions(tmp_path, "b.png", "WBC")
    assert [g.bounds for g in got] == [(0, 0, 10, 10), (20, 20, 30, 30)]  # the cell outline, not its nucleus
    assert find_regions(tmp_path, "b.png", "Lymphocyte") == []
    assert find_regions(tmp_path, "c.png", "WBC") is None and find_regions(None, "a.png", "WBC") is None
    write_feature_collection(tmp_path / "a.geojson",
                             [annotation_feature(box(0, 0, 9, 9), classification="WBC")])
    both = find_regions(tmp_path, "a.png", "WBC")
    assert len(both) == 2 and isinstance(both[0], np.ndarray) and both[1].area == 81


def test_class_matches_whole_names_and_base_classes_only():
    assert class_matches("WBC", "wbc") and class_matches("WBC: Neutrophil", "WBC")
    assert not class_matches("WBCX", "WBC") and not class_matches(None, "WBC")
    assert not class_matches("Tumor: WBC", "WBC")


def test_a_broken_geojson_counts_as_no_file_with_one_warning(tmp_path):
    (tmp_path / "a.geojson").write_text("{broken")
    said = []
    assert find_regions(tmp_path, "a.png", "WBC", said.append) is None
    assert find_regions(tmp_path, "a.png", "WBC", said.append) is None
    assert len(said) == 1 and "a.geojson: not valid JSON" in said[0] and "not used" in said[0]


def test_coverage_counts_polygon_pixels_like_box_pixels():
    coords = np.array([[0, 0], [10, 0]])
    b = [5, 0, 15, 10]
    assert coverage_of_boxes(coords, 10, [box(*b)], (20, 20)) == coverage_of_boxes(coords, 10, [b], (20, 20))
    assert coverage_of_boxes(np.array([[0, 0]]), 10, [box(5, 0, 15, 10)], (20, 20)) == (50, 100)


def test_figures_outline_a_polygon_as_annotated_not_its_bounding_box():
    """A triangle is drawn as its three corners (closed by the figure), a box as its four, holes and the
    parts of a multipolygon each as their own ring, all times the figure's scale."""
    import shapely

    from cytofm.data.annotations.regions import region_outlines

    tri = shapely.Polygon([(0, 0), (10, 0), (0, 20)])
    (ring,) = region_outlines(tri, 0.5)
    assert ring.tolist() == [[0, 0], [5, 0], [0, 10], [0, 0]]
    (box,) = region_outlines(np.array([2, 4, 6, 8]), 2.0)
    assert box.tolist() == [[4, 8], [12, 8], [12, 16], [4, 16]]
    holed = shapely.Polygon([(0, 0), (9, 0), (9, 9), (0, 9)], [[(3, 3), (6, 3), (6, 6), (3, 6)]])
    assert len(region_outlines(holed)) == 2
    assert len(region_outlines(shapely.MultiPolygon([tri, shapely.box(20, 20, 30, 30)]))) == 2
