"""A campaign driven through the API with Flask's test client: project, items, workers."""

import json

import sqlalchemy as sa

from orchestrator.models import Assignment, Item

LABELS = ["cat", "dog"]


class Campaign:
    """A project with items and gold, an internal workforce, and worker keys."""

    def __init__(self, client, ops, make_key, session, **settings):
        self.client, self.ops, self.session = client, ops, session
        self.make_key = make_key
        project = {
            "name": "pets",
            "labels": LABELS,
            "overlap": 2,
            "gold_rate": 0.25,
            "gold_accuracy_threshold": 0.7,
            "gold_min_answers": 3,
            "instructions": "Is it a cat or a dog?",
            **settings,
        }
        self.project_id = client.post("/api/v1/projects", json=project, headers=ops).get_json()[
            "id"
        ]
        self.workforce_id = self.workforce("internal")

    def workforce(self, name, **config):
        response = self.client.post(
            "/api/v1/workforces",
            json={"name": name, "kind": "internal", "config": config},
            headers=self.ops,
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    @classmethod
    def with_gold(cls, client, ops, make_key, session, **settings):
        """A gold-heavy campaign (40% gold, 2 answers an item) of 6 items and 4 gold."""
        settings = {"gold_rate": 0.4, "gold_min_answers": 3, "overlap": 2, **settings}
        campaign = cls(client, ops, make_key, session, **settings)
        campaign.import_items(6, gold=4)
        return campaign

    def vendor_workforce(self, vendor, *, name=None, config=None, price="0.10"):
        """Register `vendor`'s workforce (`name`, default `<vendor>-wf`) with a rate card at
        `price` an answer; return its id."""
        workforce = {"name": name or f"{vendor}-wf", "kind": "vendor", "vendor": vendor}
        if config is not None:
            workforce["config"] = config
        response = self.client.post("/api/v1/workforces", json=workforce, headers=self.ops)
        assert response.status_code == 201, response.get_json()
        workforce_id = response.get_json()["id"]
        card = self.client.post(
            f"/api/v1/workforces/{workforce_id}/rate-cards",
            json={"price_per_answer": price},
            headers=self.ops,
        )
        assert card.status_code == 201, card.get_json()
        return workforce_id

    def import_items(self, count, gold=0):
        rows = [{"external_id": f"i{n}", "data": {"n": n}} for n in range(count)]
        rows += [
            {"external_id": f"g{n}", "data": {"n": 1000 + n}, "gold_label": "cat"}
            for n in range(gold)
        ]
        response = self.client.post(
            f"/api/v1/projects/{self.project_id}/items",
            data="".join(json.dumps(r) + "\n" for r in rows),
            headers={**self.ops, "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 201

    def dispatch(self, workforce_id=None, **options):
        return self.client.post(
            f"/api/v1/projects/{self.project_id}/batches",
            json={"workforce_id": workforce_id or self.workforce_id, **options},
            headers=self.ops,
        )

    def worker(self, name):
        return self.make_key("worker", worker=name, workforce="internal")

    def next(self, worker):
        return self.client.get("/api/v1/tasks/next", headers=worker)

    def answer(self, worker, lease_id, label):
        return self.client.post(
            f"/api/v1/tasks/{lease_id}/answer", json={"label": label}, headers=worker
        )

    def slot(self, lease_id):
        return self.session.scalar(sa.select(Assignment).where(Assignment.lease_token == lease_id))

    def work_until_done(self, workers, answer_for=lambda slot, item: "dog"):
        """Let workers take turns until none gets a task; return every task response."""
        seen = []
        active = list(workers)
        while active:
            for worker in list(active):
                response = self.next(worker)
                if response.status_code == 204:
                    active.remove(worker)
                    continue
                task = response.get_json()
                seen.append(task)
                slot = self.slot(task["lease_id"])
                item = self.session.get(Item, slot.item_id)
                self.session.expire_all()
                assert (
                    self.answer(worker, task["lease_id"], answer_for(slot, item)).status_code == 201
                )
        return seen
