"""Before the first release: the board lists the contestants and the votes still needed."""

from __future__ import annotations

import pytest
from django.test import Client

from contestants.models import Contestant, ContestantEvaluation
from leaderboard.models import PairCount

pytestmark = pytest.mark.django_db


@pytest.fixture
def young_board() -> list[Contestant]:
    made = []
    for name, score in (("alpha", 0.6125), ("beta", None), ("gamma", 0.48)):
        contestant = Contestant.objects.create(
            name=name,
            organization="Ladder demo",
            checkpoint_path=f"/tmp/{name}",
            status=Contestant.Status.ACTIVE,
        )
        if score is not None:
            ContestantEvaluation.objects.create(contestant=contestant, fewshot_average=score)
        made.append(contestant)
    # alpha has 4 votes (3 vs beta, 1 vs gamma); min_votes is 10 by default.
    PairCount.objects.create(model_a=made[0], model_b=made[1], model_a_wins=2, ties=1)
    PairCount.objects.create(model_a=made[0], model_b=made[2], model_b_wins=1)
    return made


def test_empty_board_lists_contestants_scores_and_votes_needed(
    client: Client, young_board: list[Contestant]
) -> None:
    html = client.get("/leaderboard/").content.decode()
    assert "the first release needs 6 more votes" in html
    table = html.split('id="contestants"')[1].split("</table>")[0]
    assert table.index(">alpha<") < table.index(">beta<") < table.index(">gamma<")
    assert "61.3" in table and "not evaluated yet" in table and "48.0" in table


def test_latest_csv_before_the_first_release_is_a_json_404_saying_the_same(
    client: Client, young_board: list[Contestant]
) -> None:
    response = client.get("/leaderboard/latest.csv")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_release"
    assert "the first release needs 6 more votes" in error["message"]
    assert error["fields"]["votes_needed"] == 6


def test_votes_needed_on_an_empty_board(client: Client) -> None:
    error = client.get("/leaderboard/latest.csv").json()["error"]
    assert error["fields"]["votes_needed"] == 10
