"""Renumbering: insert/remove/replace rows and keep every reference on the same logical layer."""

from __future__ import annotations

import pytest
from graph_helpers import logical_target

import attnyolo.graph as g
from attnyolo.graph.edit import IndexMap, insert_rows, remove_rows
from attnyolo.graph.layers import layers

ROW = [-1, 1, "ay_se", []]


def tiny() -> dict:
    """Four-layer toy with a relative -2, a list from and a head reading absolute indices."""
    return {
        "nc": 2,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]],
        "head": [
            [-2, 1, "Conv", [32, 3, 2]],  # 2 reads layer 0
            [[-1, 1], 1, "Concat", [1]],  # 3 reads 2 and 1
            [[1, 3], 1, "Detect", ["nc"]],  # 4
        ],
    }


def test_index_map_rejects_a_map_that_is_not_strictly_increasing():
    with pytest.raises(ValueError, match="strictly increasing"):
        IndexMap((0, 2, 2), 4)


def test_index_map_inserted_are_the_new_indices_no_old_layer_maps_to():
    m = IndexMap((0, 1, 3, 5), 6)
    assert m.inserted == (2, 4)
    assert m[2] == m(2) == 3
    assert m.inverse() == {0: 0, 1: 1, 3: 2, 5: 3}


def test_index_map_then_composes_two_edits():
    first, second = IndexMap((0, 2), 3), IndexMap((0, 1, 3), 4)
    assert first.then(second).to_list() == [0, 3]


def test_insert_after_a_layer_redirects_every_later_reference_to_the_attention():
    cfg, m = insert_rows(tiny(), after={1: [ROW]})
    rows = [x.from_ for x in layers(cfg)]
    # new: 0, 1, 2=attn(-1), 3=old2 reads old0: -3, 4=Concat [-1, attn], 5=Detect [attn, 4]
    assert rows == [-1, -1, -1, -3, [-1, 2], [2, 4]]
    assert m.to_list() == [0, 1, 3, 4, 5] and m.inserted == (2,)


def test_relative_minus_two_grows_when_a_row_lands_between():
    cfg, _ = insert_rows(tiny(), after={0: [ROW]})
    all_layers = layers(cfg)
    # old layer 2 ([-2] -> layer 0) now reads the attention after layer 0: new index 1, seen from 3
    assert all_layers[3].from_ == -2 and all_layers[3].inputs == [1]


def test_minus_one_stays_minus_one_when_the_previous_row_is_the_attention():
    cfg, _ = insert_rows(tiny(), after={2: [ROW]})
    all_layers = layers(cfg)
    assert all_layers[3].module == "ay_se" and all_layers[4].from_ == [-1, 1]


def test_chain_of_two_attentions_after_one_layer_is_read_in_list_order():
    cfg, m = insert_rows(tiny(), after={1: [ROW, [-1, 1, "ay_eca", []]]})
    all_layers = layers(cfg)
    assert [x.module for x in all_layers[2:4]] == ["ay_se", "ay_eca"]
    assert all_layers[3].inputs == [2] and all_layers[-1].from_ == [3, 5]
    assert m.inserted == (2, 3)


def test_before_head_feeds_only_the_head():
    cfg, m = insert_rows(tiny(), before_head={1: [ROW], 3: [ROW]})
    all_layers = layers(cfg)
    assert all_layers[3].from_ == [-1, 1]  # the Concat still reads layer 1 itself
    assert [x.from_ for x in all_layers[4:6]] == [1, 3]  # rows before the head read 1 and 3
    assert all_layers[-1].from_ == [4, 5]
    assert m.to_list() == [0, 1, 2, 3, 6]


def test_before_head_row_reads_minus_one_when_its_input_is_just_above():
    cfg, _ = insert_rows(tiny(), before_head={3: [ROW]})
    assert layers(cfg)[4].from_ == -1 and layers(cfg)[4].inputs == [3]


def test_before_head_reads_the_after_chain_when_both_target_one_layer():
    cfg, _ = insert_rows(tiny(), after={3: [ROW]}, before_head={3: [[-1, 1, "ay_eca", []]]})
    all_layers = layers(cfg)
    assert [x.module for x in all_layers[4:6]] == ["ay_se", "ay_eca"]
    assert all_layers[5].inputs == [4] and all_layers[-1].inputs == [1, 5]


@pytest.mark.parametrize("after", [{0: [ROW]}, {1: [ROW, ROW]}, {0: [ROW], 2: [ROW], 3: [ROW]}])
def test_remove_rows_restores_the_input_exactly(after):
    base = tiny()
    cfg, m = insert_rows(base, after=after, before_head={1: [ROW]})
    back, _ = remove_rows(cfg, m.inserted)
    assert back == base


def test_insert_rows_leaves_its_input_untouched():
    base = tiny()
    insert_rows(base, after={1: [ROW]})
    assert base == tiny()


def test_insert_after_the_head_is_refused():
    with pytest.raises(g.PlacementError, match="head"):
        insert_rows(tiny(), after={4: [ROW]})


def test_every_reference_keeps_its_logical_layer_on_yolov8():
    base = g.load("yolov8n.yaml")
    cfg, m = g.insert(base, "se", where=[4, 6, 12, 15], check=False)
    inv = m.inverse()
    for x in layers(cfg):
        if x.index not in inv:
            continue
        old = layers(base)[inv[x.index]]
        assert [logical_target(cfg, j) if j >= 0 else j for j in x.inputs] == [
            m[j] if j >= 0 else j for j in old.inputs
        ]


def test_yolov8_neck_insert_gives_the_community_detect_inputs():
    cfg, m = g.insert("yolov8n.yaml", "cbam")
    assert layers(cfg)[-1].from_ == [16, 20, 24]
    assert m.inserted == (16, 20, 24)


def test_yolov5u_last_c3_insert_moves_only_the_last_detect_input():
    cfg, _ = g.insert("yolov5nu.yaml", "cbam", where=[23])
    assert layers(cfg)[-1].from_ == [17, 20, 24]


def test_remove_of_insert_is_the_identity_on_a_shipped_yaml():
    base = g.load("yolo11n.yaml")
    cfg, _ = g.insert(base, ["cbam", ("eca", "backbone"), ("se", "before_head")])
    assert g.remove(cfg) == base


def test_remove_only_the_rows_of_a_second_insert_gives_back_the_first_edit():
    first, _ = g.insert("yolov8n.yaml", "eca")
    second, m = g.insert(first, "se", where="backbone")
    assert g.remove(second, m.inserted) == first


def test_remove_by_zoo_name_keeps_the_other_attentions():
    cfg, _ = g.insert("yolov8n.yaml", ["eca", ("se", "backbone")])
    left = g.remove(cfg, "se")
    assert {x.module for x in layers(left) if x.module.startswith("ay_")} == {"ay_eca"}


def test_remove_of_a_non_attention_row_is_refused():
    cfg, _ = g.insert("yolov8n.yaml", "eca")
    with pytest.raises(g.PlacementError, match=r"layer 5 \(Conv\) is not an attnyolo attention row"):
        g.remove(cfg, [5])


def test_replace_swaps_the_module_and_keeps_numbering():
    cfg, _ = g.insert("yolov8n.yaml", "cbam")
    out = g.replace(cfg, "cbam", "eca", kernel_size=5)
    assert [x.from_ for x in layers(out)] == [x.from_ for x in layers(cfg)]
    assert [x.index for x in layers(out) if x.module == "ay_eca"] == [16, 20, 24]
    assert layers(out)[16].args == [{"kernel_size": 5}]


def test_replace_by_index_changes_one_row():
    cfg, _ = g.insert("yolov8n.yaml", "cbam")
    out = g.replace(cfg, 20, "se")
    assert [x.module for x in layers(out)][16:25:4] == ["ay_cbam", "ay_se", "ay_cbam"]


def test_metadata_records_base_inserted_rows_and_index_map():
    cfg, m = g.insert("yolov8n.yaml", "cbam")
    assert cfg["attnyolo"] == {"base": "yolov8n.yaml", "inserted": [16, 20, 24], "index_map": m.to_list()}
    assert g.index_map(cfg) == m


def test_metadata_is_composed_over_two_inserts():
    first, m1 = g.insert("yolov8n.yaml", "eca")
    second, m2 = g.insert(first, "se", where=[2])
    assert second["attnyolo"]["index_map"] == m1.then(m2).to_list()
    assert second["attnyolo"]["base"] == "yolov8n.yaml"
