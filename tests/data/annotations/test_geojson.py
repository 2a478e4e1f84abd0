import json
import math

import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from cytofm.data.annotations.geojson import (
    GeoJSONError,
    annotation_feature,
    cell_feature,
    geojson_for,
    read_annotations,
    tile_feature,
    write_feature_collection,
)
from cytofm.utils.errors import UserError

from tests.helpers import qupath_geojson_problems


def read(path):
    notes = []
    return read_annotations(path, log=notes.append), notes


def written(tmp_path, features, name="out.geojson"):
    p = write_feature_collection(tmp_path / name, features)
    assert qupath_geojson_problems(p) == []
    return p


# ---- written -> read ----------------------------------------------------------------------------------


def test_tile_round_trip_geometry_classification_measurements(tmp_path):
    f = tile_feature(10, 20, 224, 224, {"Foreground fraction": 0.75, "count": 3},
                     classification=("Tumor", (200, 0, 0)))
    assert f["geometry"]["coordinates"] == [[[10, 20], [234, 20], [234, 244], [10, 244], [10, 20]]]
    assert f["properties"]["objectType"] == "tile"
    (a,), notes = read(written(tmp_path, [f]))
    assert notes == []
    assert a.object_type == "tile" and a.classification == "Tumor" and a.color == (200, 0, 0)
    assert a.geometry.equals(box(10, 20, 234, 244)) and a.measurements == {"Foreground fraction": 0.75,
                                                                              "count": 3.0}


def test_non_finite_measurements_are_left_out_as_qupath_shows_missing_as_nan(tmp_path):
    f = tile_feature(0, 0, 8, 8, {"a": float("nan"), "b": math.inf, "c": 1.5})
    assert f["properties"]["measurements"] == {"c": 1.5}
    assert "measurements" not in tile_feature(0, 0, 8, 8, {"a": float("nan")})["properties"]
    (a,), _ = read(written(tmp_path, [f]))
    assert a.measurements == {"c": 1.5}


def test_numpy_numbers_are_written_as_plain_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    f = tile_feature(np.int64(3), np.int64(4), np.int64(5), np.int64(6), {"x": np.float32(0.5)})
    text = written(tmp_path, [f]).read_text()
    assert json.loads(text)["features"][0]["geometry"]["coordinates"][0][1] == [8, 4]


def test_annotation_round_trip_holes_and_multipolygons(tmp_path):
    holed = Polygon([(0, 0), (100, 0), (100, 100), (0, 100)], [[(40, 40), (60, 40), (60, 60), (40, 60)]])
    multi = MultiPolygon([box(200, 0, 210, 10), box(220, 0, 230, 10)])
    feats = [annotation_feature(holed, name="ROI 1", classification="Region*"),
             annotation_feature(multi, classification=("Other", (0, 0, 255)), measurements={"n": 2})]
    got, _ = read(written(tmp_path, feats))
    assert [a.object_type for a in got] == ["annotation", "annotation"]
    assert got[0].name == "ROI 1" and got[0].classification == "Region*" and got[0].geometry.equals(holed)
    assert got[0].geometry.area == 100 * 100 - 20 * 20
    assert got[1].geometry.equals(multi) and got[1].color == (0, 0, 255) and got[1].measurements == {"n": 2}


def test_cell_nucleus_is_a_top_level_member_beside_geometry(tmp_path):
    cell, nucleus = box(0, 0, 20, 20), box(5, 5, 12, 12)
    f = cell_feature(cell, nucleus, ("Lymphocyte", (0, 200, 0)), {"Nucleus: Area": 49})
    assert list(f) == ["type", "id", "geometry", "nucleusGeometry", "properties"]
    assert "nucleusGeometry" not in f["properties"] and f["properties"]["objectType"] == "cell"
    (a,), _ = read(written(tmp_path, [f]))
    assert a.object_type == "cell" and a.geometry.equals(cell) and a.nucleus.equals(nucleus)
    assert "nucleusGeometry" not in cell_feature(cell)


def test_ids_are_uuids_stable_per_content_and_unique_in_a_file(tmp_path):
    a, b = tile_feature(0, 0, 8, 8, {"x": 1}), tile_feature(0, 0, 8, 8, {"x": 1})
    assert a["id"] == b["id"] != tile_feature(0, 0, 8, 8, {"x": 2})["id"]
    doc = json.loads(written(tmp_path, [a, b]).read_text())
    assert len({f["id"] for f in doc["features"]}) == 2


def test_writer_refuses_what_json_or_qupath_cannot_hold():
    with pytest.raises(TypeError, match="'label'.*not a number"):
        tile_feature(0, 0, 8, 8, {"label": "benign"})
    with pytest.raises(ValueError, match="three values in 0..255"):
        tile_feature(0, 0, 8, 8, classification=("A", (300, 0, 0)))
    with pytest.raises(ValueError, match="positive"):
        tile_feature(0, 0, 0, 8)
    with pytest.raises(ValueError, match="not finite"):
        tile_feature(math.nan, 0, 8, 8)
    with pytest.raises(ValueError, match="empty geometry"):
        annotation_feature(Polygon())


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    p = written(tmp_path, [tile_feature(0, 0, 8, 8)], "sub/x.geojson")
    assert [q.name for q in p.parent.iterdir()] == ["x.geojson"]


def test_the_checker_catches_what_qupath_would_not_read(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "x", '
                   '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}, '
                   '"properties": {"objectType": "tile", "measurements": {"a": NaN}}}]}')
    assert qupath_geojson_problems(bad) == ["not strict JSON: NaN is not JSON"]
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "x", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0],
                                                                                         [1, 1], [0, 1]]]},
         "properties": {"objectType": "thing", "classification": "A"}}]}))
    assert qupath_geojson_problems(bad) == ["feature 0: id 'x' is not a UUID", "feature 0: ring not closed",
                                            "feature 0: properties.objectType missing or unknown"]


# ---- a QuPath export ----------------------------------------------------------------------------------


QUPATH_EXPORT = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "8f3c0a52-7d0e-4b73-9f58-2b3a3c1d6e01",
         "geometry": {"type": "Polygon", "coordinates": [[[100, 200], [300, 200], [300, 350], [100, 350],
                                                          [100, 200]]]},  # a rectangle
         "properties": {"objectType": "annotation", "name": "Cluster",
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}, "isLocked": True,
                        "measurements": {"Area px^2": 30000.0, "Num Detections": 12}}},
        {"type": "Feature", "id": "0b8f2f17-d7f0-4b62-8b6d-6e4c3a2d1f02",
         "geometry": {"type": "Polygon", "coordinates": [[[500.5, 500.5], [540.25, 510], [520, 560.75],
                                                          [500.5, 500.5]]]},
         "properties": {"objectType": "detection",
                        "classification": {"names": ["Tumor", "Positive"], "color": [255, 0, 0]}}},
        {"type": "Feature", "id": "2c1b7d4e-3a5f-4e6b-8c7d-9e0f1a2b3c03",
         "geometry": {"type": "MultiPoint", "coordinates": [[10, 10], [20, 20]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor",
                                                                       "color": [200, 0, 0]}}},
        {"type": "Feature", "id": "4d2e8f5a-6b7c-4d8e-9f0a-1b2c3d4e5f04",
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]},
         "nucleusGeometry": {"type": "Polygon", "coordinates": [[[10, 10], [20, 10], [20, 20], [10, 20],
                                                                 [10, 10]]]},
         "properties": {"objectType": "cell", "classification": {"name": "Lymphocyte",
                                                                 "color": [0, 0, 255]}}},
    ],
}


def test_a_qupath_export_is_read_as_qupath_shows_it(tmp_path):
    p = tmp_path / "slide.geojson"
    p.write_text(json.dumps(QUPATH_EXPORT, indent=2))
    got, notes = read(p)
    assert [(a.object_type, a.classification) for a in got] == [
        ("annotation", "Tumor"), ("detection", "Tumor: Positive"), ("cell", "Lymphocyte")]
    rect = got[0]
    assert rect.geometry.equals(box(100, 200, 300, 350)) and rect.name == "Cluster"
    assert rect.color == (200, 0, 0) and rect.measurements == {"Area px^2": 30000.0, "Num Detections": 12.0}
    assert got[1].geometry.area > 0 and got[2].nucleus.equals(box(10, 10, 20, 20))
    assert notes == [f"note: {p}: skipped 1 of 4 feature(s): a MultiPoint is not a region "
                     "(points and lines have no area)"]


def test_older_qupath_exports_list_one_feature_and_legacy_fields(tmp_path):
    legacy = [  # v0.2: a bare list, the type in "id", colorRGB packed, measurements as a list
        {"type": "Feature", "id": "PathAnnotationObject",
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
         "properties": {"classification": {"name": "Stroma", "colorRGB": -3670016},
                        "measurements": [{"name": "Area", "value": 100.0}, {"name": "Bad", "value": "NaN"}],
                        "isLocked": False}},
        {"type": "Feature",
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5], [0, 5], [0, 0]]]},
         "properties": {"object_type": "tile"}},  # before objectType was camelCase
    ]
    p = tmp_path / "old.json"
    p.write_text(json.dumps(legacy))
    got, notes = read(p)
    assert notes == []
    assert [(a.object_type, a.classification, a.color) for a in got] == [
        ("annotation", "Stroma", (200, 0, 0)), ("tile", None, None)]
    assert got[0].measurements == {"Area": 100.0}
    one = tmp_path / "one.geojson"
    one.write_text(json.dumps(QUPATH_EXPORT["features"][0]))
    (a,), _ = read(one)
    assert a.classification == "Tumor"


def test_missing_object_type_is_an_annotation_and_a_string_class_is_read_with_a_note(tmp_path):
    p = tmp_path / "x.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4],
                                                                             [0, 0]]]},
         "properties": {"classification": "WBC"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4],
                                                                             [0, 0]]]}}]}))
    got, notes = read(p)
    assert [(a.object_type, a.classification) for a in got] == [("annotation", "WBC"), ("annotation", None)]
    assert notes == [f"note: {p}: 1 feature(s): classification given as a plain string (QuPath writes "
                     "{name, color}); read as the name"]


def test_self_intersecting_polygon_is_repaired_with_a_note(tmp_path):
    bowtie = [[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]
    line = [[0, 0], [5, 5], [10, 10], [0, 0]]  # no area at all
    p = tmp_path / "x.geojson"
    p.write_text(json.dumps([{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                              "properties": {"objectType": "annotation"}} for ring in (bowtie, line)]))
    (a,), notes = read(p)
    assert a.geometry.is_valid and a.geometry.area == pytest.approx(50.0)
    assert a.geometry.geom_type == "MultiPolygon"
    assert len(notes) == 2
    assert any("skipped 1 of 2 feature(s): invalid Polygon" in n and "no area left" in n for n in notes)
    assert any("1 feature(s): invalid Polygon repaired with shapely.make_valid (Self-intersection)" in n
               for n in notes)


def test_points_lines_unknown_types_and_broken_geometry_are_skipped_with_notes(tmp_path):
    sq = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}
    feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [3, 3]]},
         "properties": {"objectType": "annotation"}},
        {"type": "Feature", "geometry": sq, "properties": {"objectType": "spaceship"}},
        {"type": "Feature", "geometry": sq, "properties": {"objectType": "root"}},
        {"type": "Feature", "geometry": None, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["0", 0], [4, 0], [4, 4],
                                                                             [0, 0]]]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0]]]},
         "properties": {}},
        "not a feature",
        {"type": "Feature", "geometry": sq, "properties": {"objectType": "annotation"}},
    ]
    p = tmp_path / "x.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    got, notes = read(p)
    assert len(got) == 1 and got[0].geometry.equals(box(0, 0, 4, 4))
    text = "\n".join(notes)
    for why in ("a Point is not a region", "a LineString is not a region",
                "unknown objectType 'spaceship'", "a root object has no region", "no geometry",
                "Polygon coordinates are not lists of [x, y] numbers", "Polygon cannot be read",
                "not a JSON object"):
        assert why in text, why
    assert len(notes) == 8 and all(n.startswith(f"note: {p}: skipped 1 of 9 feature(s)") for n in notes)


@pytest.mark.parametrize("content, message", [
    ('{"type": "FeatureCollection", "features": [', "not valid JSON (line 1, column"),
    ('{"foo": 1}', "not GeoJSON: expected a FeatureCollection"),
    ("42", "not GeoJSON: expected a FeatureCollection, a list of Features or one Feature, found a JSON int"),
    ('{"type": "Polygon", "coordinates": []}', "a bare Polygon, not Features"),
    ('{"type": "FeatureCollection", "features": {}}', "a FeatureCollection without a 'features' list"),
    (b"\xff\xfe\x00binary", "not a text file"),
])
def test_bad_files_raise_a_user_error_naming_the_file(tmp_path, content, message):
    p = tmp_path / "ann.geojson"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(GeoJSONError) as e:
        read_annotations(p)
    assert isinstance(e.value, UserError) and str(e.value).startswith(str(p)) and message in str(e.value)
    with pytest.raises(GeoJSONError, match="cannot read"):
        read_annotations(tmp_path / "missing.geojson")


def test_geojson_for_finds_stem_or_whole_name(tmp_path):
    assert geojson_for(tmp_path, "a/slide.svs") is None
    (tmp_path / "slide.svs.geojson").write_text("[]")
    assert geojson_for(tmp_path, "a/slide.svs").name == "slide.svs.geojson"
    (tmp_path / "slide.json").write_text("[]")
    assert geojson_for(tmp_path, "a/slide.svs").name == "slide.json"
    (tmp_path / "slide.geojson").write_text("[]")
    assert geojson_for(tmp_path, "slide.svs").name == "slide.geojson"


def test_read_geometry_is_in_level0_pixels_unchanged(tmp_path):
    g = shapely.Polygon([(1e5, 2e5), (1e5 + 0.5, 2e5), (1e5 + 0.5, 2e5 + 0.25)])
    (a,), _ = read(written(tmp_path, [annotation_feature(g)]))
    assert a.geometry.equals_exact(g, 0)


def test_writer_refuses_an_object_type_qupath_does_not_know():
    with pytest.raises(ValueError, match="objectType 'patch': QuPath's are annotation, detection, cell"):
        tile_feature(0, 0, 8, 8, object_type="patch")
    assert tile_feature(0, 0, 8, 8, object_type="detection")["properties"]["objectType"] == "detection"


def test_ids_are_unique_across_images_tiled_alike_and_stay_deterministic(tmp_path):
    """Two images prepared with the same grid give tiles of the same content; QuPath takes an id for one
    object across a project, so each file's ids carry its image (the file's stem, or ``image``)."""
    import uuid

    from PIL import Image
    from typer.testing import CliRunner

    from cytofm.cli.main import app

    from tests.helpers import smear

    (tmp_path / "in").mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        Image.fromarray(smear(256, 256, seed=seed)[0]).save(tmp_path / "in" / f"{name}.png")
    args = ["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "prep"), "--geojson",
            "tiling.patch_size=64", "foreground.method=none", "resolution.mpp=0.5"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    ids = {n: [f["id"] for f in json.loads((tmp_path / "prep" / "geojson" / f"{n}.geojson").read_text())[
        "features"]] for n in ("a", "b")}
    assert len(ids["a"]) == len(ids["b"]) == 16 and not set(ids["a"]) & set(ids["b"])
    assert all(str(uuid.UUID(i)) == i for i in ids["a"] + ids["b"])
    tiles = [tile_feature(x, 0, 8, 8) for x in (0, 8)]
    once = [f["id"] for f in json.loads(written(tmp_path, tiles, "a.geojson").read_text())["features"]]
    again = [f["id"] for f in json.loads(written(tmp_path, tiles, "a.geojson").read_text())["features"]]
    other = write_feature_collection(tmp_path / "x.geojson", tiles, image="a")
    assert once == again == [f["id"] for f in json.loads(other.read_text())["features"]]
    assert once == [str(uuid.uuid5(uuid.UUID("6f1d3a52-52c1-4c55-9a53-2f0c6b7e1a01"), f"a/{f['id']}"))
                    for f in tiles]
