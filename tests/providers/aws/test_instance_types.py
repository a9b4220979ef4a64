"""A role gets the smallest general-purpose instance type that fits; instance_class overrides."""

from __future__ import annotations

import pytest

from openpitrix.providers.aws.instance_types import TABLE, choose_instance_type, table_markdown
from openpitrix.providers.base import ProviderError


@pytest.mark.parametrize(
    ("cpu", "memory", "chosen"),
    [
        (1, 512, "t3.nano"),
        (1, 1024, "t3.micro"),
        (2, 3000, "t3.medium"),
        (2, 8192, "t3.large"),
        (3, 1024, "t3.xlarge"),
        (4, 16384, "t3.xlarge"),
        (8, 16384, "t3.2xlarge"),
        (9, 1024, "m5.4xlarge"),
        (16, 70000, "m5.8xlarge"),
        (96, 393216, "m5.24xlarge"),
    ],
)
def test_the_smallest_type_that_fits_is_chosen(cpu: int, memory: int, chosen: str) -> None:
    assert choose_instance_type(cpu, memory) == chosen


def test_the_table_is_ordered_so_that_the_first_fit_is_the_smallest() -> None:
    sizes = [(row.vcpus, row.memory) for row in TABLE]

    assert sizes == sorted(sizes)
    assert all(
        choose_instance_type(row.vcpus, row.memory) in {r.name for r in TABLE} for row in TABLE
    )


def test_an_instance_type_name_overrides_the_table() -> None:
    assert choose_instance_type(1, 512, "c5.xlarge") == "c5.xlarge"
    assert choose_instance_type(1, 512, "g4dn.xlarge") == "g4dn.xlarge"


def test_a_family_limits_the_choice_to_it() -> None:
    assert choose_instance_type(2, 1024, "m5") == "m5.large"
    assert choose_instance_type(4, 1024, "t3") == "t3.xlarge"


def test_qingcloud_instance_classes_mean_nothing_on_aws() -> None:
    assert choose_instance_type(2, 2048, 0) == choose_instance_type(2, 2048, "1") == "t3.small"


def test_a_role_larger_than_the_table_is_refused_with_the_way_out() -> None:
    with pytest.raises(ProviderError) as info:
        choose_instance_type(128, 1024)

    assert info.value.code == "instance_type_unavailable"
    assert "instance_class" in info.value.message
    with pytest.raises(ProviderError, match="of family t3"):
        choose_instance_type(16, 1024, "t3")


def test_the_readme_table_lists_every_row() -> None:
    text = table_markdown()

    assert all(f"| {row.name} | {row.vcpus} | {row.memory} |" in text for row in TABLE)
