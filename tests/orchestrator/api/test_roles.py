"""Who may call what: a table of route x role, checked against every registered route."""

import pytest

ROLES = ("admin", "ops", "finance", "vendor", "worker")
PUBLIC = {"/healthz", "/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/<path:filename>"}

# (method, rule) -> roles admitted. A new route must be added here, or the test below fails.
ROUTE_ROLES = {
    ("GET", "/api/v1/projects"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/projects"): {"admin", "ops"},
    ("GET", "/api/v1/projects/<id:project_id>"): {"admin", "ops", "finance"},
    ("PATCH", "/api/v1/projects/<id:project_id>"): {"admin", "ops"},
    ("POST", "/api/v1/projects/<id:project_id>/archive"): {"admin", "ops"},
    ("GET", "/api/v1/projects/<id:project_id>/items"): {"admin", "ops"},
    ("POST", "/api/v1/projects/<id:project_id>/items"): {"admin", "ops"},
    ("GET", "/api/v1/workforces"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/workforces"): {"admin", "ops"},
    ("GET", "/api/v1/workforces/<id:workforce_id>"): {"admin", "ops", "finance"},
    ("GET", "/api/v1/projects/<id:project_id>/batches"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/projects/<id:project_id>/batches"): {"admin", "ops"},
    ("GET", "/api/v1/batches/<id:batch_id>"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/batches/<id:batch_id>/cancel"): {"admin", "ops"},
    ("GET", "/api/v1/projects/<id:project_id>/progress"): {"admin", "ops", "finance"},
    ("GET", "/api/v1/projects/<id:project_id>/workers"): {"admin", "ops"},
    ("GET", "/api/v1/projects/<id:project_id>/results"): {"admin", "ops"},
    ("POST", "/api/v1/projects/<id:project_id>/aggregate"): {"admin", "ops"},
    ("GET", "/api/v1/workforces/<id:workforce_id>/rate-cards"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/workforces/<id:workforce_id>/rate-cards"): {"admin", "ops"},
    ("GET", "/api/v1/projects/<id:project_id>/bonuses"): {"admin", "ops", "finance"},
    ("POST", "/api/v1/projects/<id:project_id>/bonuses"): {"admin", "ops"},
    ("GET", "/api/v1/billing/costs"): {"admin", "ops", "finance"},
    ("GET", "/api/v1/billing/projects/<id:project_id>/cost-per-label"): {"admin", "ops", "finance"},
    ("GET", "/api/v1/billing/projects/<id:project_id>/budget"): {"admin", "ops", "finance"},
    ("GET", "/api/v1/billing/workforces/<id:workforce_id>/budget"): {"admin", "ops", "finance"},
    ("PUT", "/api/v1/billing/workforces/<id:workforce_id>/budget"): {"admin", "ops"},
    ("GET", "/api/v1/billing/invoices"): {"admin", "finance"},
    ("POST", "/api/v1/billing/invoices"): {"admin", "finance"},
    ("GET", "/api/v1/billing/invoices/<id:invoice_id>"): {"admin", "finance"},
    ("DELETE", "/api/v1/billing/invoices/<id:invoice_id>"): {"admin", "finance"},
    ("GET", "/api/v1/billing/invoices/<id:invoice_id>/html"): {"admin", "finance"},
    ("POST", "/api/v1/billing/invoices/<id:invoice_id>/issue"): {"admin", "finance"},
    ("GET", "/metrics"): {"admin", "ops"},
    ("GET", "/api/v1/tasks/next"): {"worker"},
    ("GET", "/api/v1/tasks/suite"): {"worker"},
    ("POST", "/api/v1/tasks/answers"): {"worker"},
    ("POST", "/api/v1/tasks/<string:lease_id>/answer"): {"worker"},
    ("POST", "/api/v1/tasks/<string:lease_id>/release"): {"worker"},
    ("GET", "/api/v1/vendor/batches"): {"vendor"},
    ("GET", "/api/v1/vendor/batches/<id:batch_id>"): {"vendor"},
    ("GET", "/api/v1/vendor/batches/<id:batch_id>/tasks"): {"vendor"},
    ("POST", "/api/v1/vendor/batches/<id:batch_id>/answers"): {"vendor"},
    ("GET", "/api/v1/workforces/<id:workforce_id>/deliveries"): {"admin", "ops"},
    (
        "POST",
        "/api/v1/workforces/<id:workforce_id>/deliveries/<id:delivery_id>/replay",
    ): {"admin", "ops"},
    ("GET", "/api/v1/keys"): {"admin", "ops"},
    ("POST", "/api/v1/keys/<id:key_id>/rotate"): {"admin", "ops"},
    ("POST", "/api/v1/keys/<id:key_id>/revoke"): {"admin", "ops"},
    ("GET", "/api/v1/vendor/keys"): {"vendor"},
    ("POST", "/api/v1/vendor/keys/rotate"): {"vendor"},
    ("POST", "/api/v1/vendor/keys/<id:key_id>/rotate"): {"vendor"},
    ("GET", "/api/v1/vendors/quality"): {"admin", "ops"},
    ("GET", "/api/v1/vendors/<id:vendor_id>/quality"): {"admin", "ops"},
    ("GET", "/api/v1/vendor/quality"): {"vendor"},
}


def api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC or rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, rule


def test_every_route_declares_roles_and_is_in_the_table(app):
    for method, rule in api_routes(app):
        view = app.view_functions[rule.endpoint]
        handler = getattr(view, "view_class", None)
        func = getattr(handler, method.lower()) if handler else view
        assert getattr(func, "required_roles", None) is not None, f"{method} {rule} has no roles"
        assert func.required_roles == ROUTE_ROLES[(method, rule.rule)], f"{method} {rule}"


def concrete(rule: str) -> str:
    for placeholder in (
        "<id:project_id>",
        "<id:workforce_id>",
        "<id:batch_id>",
        "<id:invoice_id>",
        "<id:delivery_id>",
        "<id:key_id>",
        "<id:vendor_id>",
    ):
        rule = rule.replace(placeholder, "999999")
    return rule.replace("<string:lease_id>", "no-such-lease")


SCOPES = {"vendor": {"vendor": "acme"}, "worker": {"worker": "w-1"}}


@pytest.mark.parametrize("role", ROLES)
def test_role_table(client, make_key, role):
    headers = make_key(role, **SCOPES.get(role, {}))
    for (method, rule), allowed in ROUTE_ROLES.items():
        response = client.open(concrete(rule), method=method, headers=headers, json={})
        if role in allowed:
            assert response.status_code not in (401, 403), (method, rule, role)
        else:
            assert response.status_code == 403, (method, rule, role, response.status_code)
            assert response.get_json()["error"]["code"] == "forbidden"


def test_no_key_is_401_everywhere(client):
    for method, rule in ROUTE_ROLES:
        response = client.open(concrete(rule), method=method, json={})
        assert response.status_code == 401, (method, rule)
