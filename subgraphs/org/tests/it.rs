//! The org subgraph end to end, through its HTTP `/graphql` as the gateway
//! calls it (see `support`): CRUD, the chart, the rules that keep it a
//! forest, isolation between tenants, error codes, and the query count.

mod support;

use serde_json::{Value, json};
use support::{App, chart_query, measure_chart, on_a_deep_stack};
use tenancy::TenantId;
use tenancy::testing::first_code;

const MEMBER: &str = "query($id: ID!) { orgMember(id: $id) { id name title managerId manager { id } reports { id } } }";
const UPDATE: &str = "mutation($id: ID!, $i: UpdateOrgMemberInput!) { updateOrgMember(id: $id, input: $i) { id name title managerId } }";
const DELETE: &str =
    "mutation($id: ID!, $to: ID) { deleteOrgMember(id: $id, reassignReportsTo: $to) }";

async fn manager_of(app: &App, tenant: TenantId, id: &str) -> Value {
    let body = app.call(tenant, MEMBER, json!({"id": id})).await;
    body["data"]["orgMember"]["managerId"].clone()
}

#[tokio::test]
async fn org_members_can_be_created_read_listed_updated_and_deleted() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;

    let created = app
        .call(
            tenant,
            r#"mutation { createOrgMember(input: {name: " Ada ", title: "CEO"}) { id name title managerId manager { id } reports { id } createdAt updatedAt } }"#,
            json!({}),
        )
        .await;
    let ceo = &created["data"]["createOrgMember"];
    assert_eq!(ceo["name"], "Ada", "{created}");
    assert_eq!(ceo["managerId"], Value::Null);
    assert_eq!(ceo["manager"], Value::Null);
    assert_eq!(ceo["reports"], json!([]));
    assert_eq!(ceo["createdAt"], ceo["updatedAt"]);
    let ceo_id = ceo["id"].as_str().unwrap().to_owned();
    let cto = app.add(tenant, "Grace", Some(&ceo_id)).await;
    let cfo = app.add(tenant, "Edsger", Some(&ceo_id)).await;

    // Both directions of the manager link.
    let read = app.call(tenant, MEMBER, json!({"id": ceo_id})).await;
    assert_eq!(
        read["data"]["orgMember"]["reports"],
        json!([{"id": cto}, {"id": cfo}]),
        "{read}"
    );
    let read = app.call(tenant, MEMBER, json!({"id": cto})).await;
    assert_eq!(read["data"]["orgMember"]["managerId"], json!(ceo_id));
    assert_eq!(read["data"]["orgMember"]["manager"], json!({"id": ceo_id}));

    // Two pages of two and one, in creation order.
    let list = "query($after: String) { orgMembers(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
    let page = app.call(tenant, list, json!({})).await;
    assert_eq!(
        page["data"]["orgMembers"]["nodes"],
        json!([{"id": ceo_id}, {"id": cto}])
    );
    assert_eq!(page["data"]["orgMembers"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["data"]["orgMembers"]["pageInfo"]["endCursor"].clone();
    let rest = app.call(tenant, list, json!({"after": cursor})).await;
    assert_eq!(rest["data"]["orgMembers"]["nodes"], json!([{"id": cfo}]));
    assert_eq!(rest["data"]["orgMembers"]["pageInfo"]["hasNextPage"], false);

    // Renaming keeps the manager; an explicit null clears it.
    let renamed = app
        .call(
            tenant,
            UPDATE,
            json!({"id": cto, "i": {"name": "Grace H.", "title": "CTO"}}),
        )
        .await;
    let member = &renamed["data"]["updateOrgMember"];
    assert_eq!(
        (&member["name"], &member["title"]),
        (&json!("Grace H."), &json!("CTO")),
        "{renamed}"
    );
    assert_eq!(member["managerId"], json!(ceo_id));
    let cleared = app
        .call(tenant, UPDATE, json!({"id": cto, "i": {"managerId": null}}))
        .await;
    assert_eq!(
        cleared["data"]["updateOrgMember"]["managerId"],
        Value::Null,
        "{cleared}"
    );
    assert_eq!(cleared["data"]["updateOrgMember"]["name"], "Grace H.");
    let moved = app
        .call(tenant, UPDATE, json!({"id": cfo, "i": {"managerId": cto}}))
        .await;
    assert_eq!(moved["data"]["updateOrgMember"]["managerId"], json!(cto));

    let deleted = app.call(tenant, DELETE, json!({"id": cfo})).await;
    assert_eq!(deleted["data"]["deleteOrgMember"], json!(cfo));
    let gone = app.call(tenant, MEMBER, json!({"id": cfo})).await;
    assert_eq!(first_code(&gone), "NOT_FOUND", "{gone}");
    let again = app.call(tenant, DELETE, json!({"id": cfo})).await;
    assert_eq!(first_code(&again), "NOT_FOUND", "{again}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_chart_nests_reports_under_their_managers() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    let ceo = app.add(tenant, "Ceo", None).await;
    let vp = app.add(tenant, "Vp", Some(&ceo)).await;
    let lead = app.add(tenant, "Lead", Some(&vp)).await;
    let peer = app.add(tenant, "Peer", Some(&ceo)).await;
    let advisor = app.add(tenant, "Advisor", None).await;

    let chart = app
        .call(
            tenant,
            "{ orgChart { id reports { id reports { id reports { id } } } } }",
            json!({}),
        )
        .await;
    let expected = json!([
        {"id": ceo, "reports": [
            {"id": vp, "reports": [{"id": lead, "reports": []}]},
            {"id": peer, "reports": []},
        ]},
        {"id": advisor, "reports": []},
    ]);
    assert_eq!(chart["data"]["orgChart"], expected, "{chart}");

    // The flat form lists each member after its manager, depth first, in
    // one query, so a client can rebuild a chart of any depth.
    let before = app.queries();
    let flat = app
        .call(tenant, "{ orgChartMembers { id managerId } }", json!({}))
        .await;
    let order: Vec<&str> = flat["data"]["orgChartMembers"]
        .as_array()
        .unwrap_or_else(|| panic!("{flat}"))
        .iter()
        .map(|member| member["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [&ceo, &vp, &lead, &peer, &advisor]);
    assert_eq!(flat["data"]["orgChartMembers"][2]["managerId"], json!(vp));
    assert_eq!(app.queries() - before, 1, "the flat chart is one query");

    // The same chart on the federated tenant entity, and a mutation's
    // nested fields see the change it made.
    let entity = app
        .call(
            tenant,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { orgChart { id } } } }",
            json!({"r": [{"__typename": "Tenant", "id": tenant.to_string()}]}),
        )
        .await;
    assert_eq!(
        entity["data"]["_entities"][0]["orgChart"],
        json!([{"id": ceo}, {"id": advisor}]),
        "{entity}"
    );
    let moved = app
        .call(
            tenant,
            "mutation($lead: ID!, $peer: ID!, $to: ID!) {
                lead: updateOrgMember(id: $lead, input: {managerId: $to}) { manager { id reports { id } } }
                peer: updateOrgMember(id: $peer, input: {managerId: $to}) { manager { id reports { id } } }
            }",
            json!({"lead": lead, "peer": peer, "to": advisor}),
        )
        .await;
    assert!(moved["errors"].is_null(), "{moved}");
    let after_lead = json!({"id": advisor, "reports": [{"id": lead}]});
    assert_eq!(moved["data"]["lead"]["manager"], after_lead);
    let after_both = json!({"id": advisor, "reports": [{"id": lead}, {"id": peer}]});
    assert_eq!(moved["data"]["peer"]["manager"], after_both);
    app.cleanup().await;
}

#[tokio::test]
async fn a_change_that_would_make_a_cycle_is_a_conflict() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    let ceo = app.add(tenant, "Ceo", None).await;
    let vp = app.add(tenant, "Vp", Some(&ceo)).await;
    let lead = app.add(tenant, "Lead", Some(&vp)).await;

    // Self-management, a direct report, an indirect report.
    for (member, manager) in [
        (&ceo, &ceo),
        (&lead, &lead),
        (&ceo, &vp),
        (&ceo, &lead),
        (&vp, &lead),
    ] {
        let body = app
            .call(
                tenant,
                UPDATE,
                json!({"id": member, "i": {"managerId": manager}}),
            )
            .await;
        assert_eq!(
            first_code(&body),
            "CONFLICT",
            "{member} under {manager}: {body}"
        );
    }
    assert_eq!(manager_of(&app, tenant, &ceo).await, Value::Null);
    assert_eq!(manager_of(&app, tenant, &vp).await, json!(ceo));

    // Moving a member up, or out of the chart, closes no cycle.
    let up = app
        .call(tenant, UPDATE, json!({"id": lead, "i": {"managerId": ceo}}))
        .await;
    assert_eq!(
        up["data"]["updateOrgMember"]["managerId"],
        json!(ceo),
        "{up}"
    );
    let under = app
        .call(tenant, UPDATE, json!({"id": vp, "i": {"managerId": lead}}))
        .await;
    assert_eq!(
        under["data"]["updateOrgMember"]["managerId"],
        json!(lead),
        "{under}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_changes_cannot_close_a_cycle_together() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;

    // Each change alone is fine; together they would make a two-member
    // cycle. Whichever commits first wins; the other must see it.
    for round in 0..20 {
        let x = app.add(tenant, &format!("X{round}"), None).await;
        let y = app.add(tenant, &format!("Y{round}"), None).await;
        let (first, second) = tokio::join!(
            app.call(tenant, UPDATE, json!({"id": x, "i": {"managerId": y}})),
            app.call(tenant, UPDATE, json!({"id": y, "i": {"managerId": x}})),
        );
        let mut codes = [first_code(&first), first_code(&second)];
        codes.sort();
        assert_eq!(codes, ["<none>", "CONFLICT"], "{first} {second}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenants_member_cannot_be_a_manager() {
    let app = App::start().await;
    let a = app.ready_tenant().await;
    let b = app.ready_tenant().await;
    let a_boss = app.add(a, "A's boss", None).await;
    let b_member = app.add(b, "B's member", None).await;
    let b_boss = app.add(b, "B's boss", None).await;
    let b_report = app.add(b, "B's report", Some(&b_boss)).await;

    let create = app
        .call(
            b,
            "mutation($m: ID) { createOrgMember(input: {name: \"Mole\", title: \"Spy\", managerId: $m}) { id } }",
            json!({"m": a_boss}),
        )
        .await;
    assert_eq!(first_code(&create), "NOT_FOUND", "{create}");
    let update = app
        .call(
            b,
            UPDATE,
            json!({"id": b_member, "i": {"managerId": a_boss}}),
        )
        .await;
    assert_eq!(first_code(&update), "NOT_FOUND", "{update}");
    let delete = app
        .call(b, DELETE, json!({"id": b_boss, "to": a_boss}))
        .await;
    assert_eq!(first_code(&delete), "NOT_FOUND", "{delete}");

    // Nothing moved on either side.
    assert_eq!(manager_of(&app, b, &b_member).await, Value::Null);
    assert_eq!(manager_of(&app, b, &b_report).await, json!(b_boss));
    let members = app
        .call(b, "{ orgMembers { nodes { name } } }", json!({}))
        .await;
    assert_eq!(
        members["data"]["orgMembers"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{members}"
    );
    let chart = app
        .call(a, "{ orgChart { id reports { id } } }", json!({}))
        .await;
    assert_eq!(
        chart["data"]["orgChart"],
        json!([{"id": a_boss, "reports": []}])
    );
    app.cleanup().await;
}

#[tokio::test]
async fn tenant_b_cannot_read_list_update_or_delete_tenant_a_members() {
    let app = App::start().await;
    let a = app.ready_tenant().await;
    let b = app.ready_tenant().await;
    let boss = app.add(a, "A's secret boss", None).await;
    let report = app.add(a, "A's secret report", Some(&boss)).await;

    for id in [&boss, &report] {
        let read = app.call(b, MEMBER, json!({"id": id})).await;
        assert_eq!(first_code(&read), "NOT_FOUND", "{read}");
        let update = app
            .call(b, UPDATE, json!({"id": id, "i": {"name": "B was here"}}))
            .await;
        assert_eq!(first_code(&update), "NOT_FOUND", "{update}");
        let clear = app
            .call(b, UPDATE, json!({"id": id, "i": {"managerId": null}}))
            .await;
        assert_eq!(first_code(&clear), "NOT_FOUND", "{clear}");
        for to in [Value::Null, json!(boss)] {
            let delete = app.call(b, DELETE, json!({"id": id, "to": to})).await;
            assert_eq!(first_code(&delete), "NOT_FOUND", "{delete}");
        }
    }
    let list = app
        .call(
            b,
            "{ orgMembers { nodes { id } } orgChart { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["data"],
        json!({"orgMembers": {"nodes": []}, "orgChart": []}),
        "{list}"
    );

    // B asking the entity resolver for A's tenant gets nothing of A's.
    let entities = app
        .call(
            b,
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { orgChart { name } } } }",
            json!({"r": [{"__typename": "Tenant", "id": a.to_string()}]}),
        )
        .await;
    assert!(!entities.to_string().contains("secret"), "{entities}");
    assert_eq!(first_code(&entities), "NOT_FOUND");

    // A's chart is untouched.
    let chart = app
        .call(a, "{ orgChart { name reports { name } } }", json!({}))
        .await;
    let expected = json!([{"name": "A's secret boss", "reports": [{"name": "A's secret report"}]}]);
    assert_eq!(chart["data"]["orgChart"], expected);
    app.cleanup().await;
}

#[tokio::test]
async fn deleting_a_manager_with_reports_needs_a_successor_outside_their_branch() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    let ceo = app.add(tenant, "Ceo", None).await;
    let vp = app.add(tenant, "Vp", Some(&ceo)).await;
    let lead = app.add(tenant, "Lead", Some(&vp)).await;
    let engineer = app.add(tenant, "Engineer", Some(&lead)).await;
    let peer = app.add(tenant, "Peer", Some(&ceo)).await;

    // Without a successor, or with one that would close a cycle: refused,
    // and nothing changed.
    let refused = app.call(tenant, DELETE, json!({"id": vp})).await;
    assert_eq!(first_code(&refused), "CONFLICT", "{refused}");
    for successor in [&vp, &lead, &engineer] {
        let body = app
            .call(tenant, DELETE, json!({"id": vp, "to": successor}))
            .await;
        assert_eq!(first_code(&body), "CONFLICT", "{successor}: {body}");
    }
    let missing = app
        .call(
            tenant,
            DELETE,
            json!({"id": vp, "to": TenantId::new().to_string()}),
        )
        .await;
    assert_eq!(first_code(&missing), "NOT_FOUND", "{missing}");
    assert_eq!(manager_of(&app, tenant, &vp).await, json!(ceo));
    assert_eq!(manager_of(&app, tenant, &lead).await, json!(vp));

    // With a successor elsewhere: the reports move there, the rest stays.
    let deleted = app
        .call(tenant, DELETE, json!({"id": vp, "to": peer}))
        .await;
    assert_eq!(deleted["data"]["deleteOrgMember"], json!(vp), "{deleted}");
    assert_eq!(manager_of(&app, tenant, &lead).await, json!(peer));
    assert_eq!(manager_of(&app, tenant, &engineer).await, json!(lead));
    let chart = app
        .call(
            tenant,
            "{ orgChart { id reports { id reports { id reports { id } } } } }",
            json!({}),
        )
        .await;
    let expected = json!([{"id": ceo, "reports": [
        {"id": peer, "reports": [{"id": lead, "reports": [{"id": engineer}]}]},
    ]}]);
    assert_eq!(chart["data"]["orgChart"], expected, "{chart}");

    // A member without reports needs no successor.
    let leaf = app.call(tenant, DELETE, json!({"id": engineer})).await;
    assert_eq!(leaf["data"]["deleteOrgMember"], json!(engineer), "{leaf}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_tenant_without_an_org_database_is_told_why() {
    let app = App::start().await;

    // Never signed up for org: no registry entry.
    let stranger = TenantId::new();
    let body = app.call(stranger, "{ orgChart { id } }", json!({})).await;
    assert_eq!(first_code(&body), "SERVICE_NOT_ENABLED", "{body}");

    // Signed up, database still being created.
    let pending = app.track(TenantId::new());
    let database = pending.database_name("org");
    app.service
        .runtime
        .registry
        .claim(pending, &app.host().url(), &database)
        .await
        .unwrap();
    for query in [
        "{ orgMembers { nodes { id } } }",
        r#"mutation { createOrgMember(input: {name: "x", title: "y"}) { id } }"#,
    ] {
        let body = app.call(pending, query, json!({})).await;
        assert_eq!(first_code(&body), "TENANT_PROVISIONING", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["retryable"], true);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_bad_user_input_never_a_500() {
    let app = App::start().await;
    let tenant = app.ready_tenant().await;
    let id = app.add(tenant, "Real", None).await;
    let create = "mutation($i: CreateOrgMemberInput!) { createOrgMember(input: $i) { id } }";
    let long = "x".repeat(201);
    let too_deep = chart_query(70);
    let cases: Vec<(&str, Value)> = vec![
        (MEMBER, json!({"id": "not-a-uuid"})),
        (DELETE, json!({"id": "1"})),
        (DELETE, json!({"id": id, "to": "nope"})),
        (UPDATE, json!({"id": "nope", "i": {"name": "x"}})),
        (create, json!({"i": {"name": "", "title": "t"}})),
        (create, json!({"i": {"name": "n", "title": "   "}})),
        (create, json!({"i": {"name": long, "title": "t"}})),
        (create, json!({"i": {"name": "n", "title": long}})),
        (
            create,
            json!({"i": {"name": "n", "title": "t", "managerId": "boss"}}),
        ),
        (create, json!({"i": {"name": 5, "title": "t"}})),
        (create, json!({"i": {"name": ["n"], "title": "t"}})),
        (create, json!({"i": {"title": "t"}})),
        (create, json!({"i": "n"})),
        (UPDATE, json!({"id": id, "i": {}})),
        (
            UPDATE,
            json!({"id": id, "i": {"name": null, "title": null}}),
        ),
        (UPDATE, json!({"id": id, "i": {"name": " "}})),
        (UPDATE, json!({"id": id, "i": {"title": long}})),
        (UPDATE, json!({"id": id, "i": {"managerId": "not-a-uuid"}})),
        (UPDATE, json!({"id": id, "i": {"managerId": 7}})),
        ("{ orgMembers(first: 0) { nodes { id } } }", json!({})),
        ("{ orgMembers(first: 101) { nodes { id } } }", json!({})),
        (
            "{ orgMembers(after: \"garbage\") { nodes { id } } }",
            json!({}),
        ),
        ("{ orgChart { nosuchfield } }", json!({})),
        ("{ orgChart { ", json!({})),
        (&too_deep, json!({})),
    ];
    for (query, variables) in cases {
        let body = app.call(tenant, query, variables.clone()).await;
        assert_eq!(
            first_code(&body),
            "BAD_USER_INPUT",
            "{query} {variables} → {body}"
        );
    }

    // The member survived every bad update.
    let still = app.call(tenant, MEMBER, json!({"id": id})).await;
    assert_eq!(still["data"]["orgMember"]["name"], "Real");
    assert_eq!(still["data"]["orgMember"]["title"], "Staff");
    app.cleanup().await;
}

#[test]
fn the_chart_costs_the_same_few_queries_for_fifty_or_a_thousand_members() {
    on_a_deep_stack(chart_query_count);
}

async fn chart_query_count() {
    let app = App::start().await;
    let small = app.ready_tenant().await;
    let large = app.ready_tenant().await;
    const LEVELS: usize = 50;
    app.seed_chart(small, LEVELS, LEVELS).await;
    app.seed_chart(large, 1_000, LEVELS).await;
    let query = chart_query(LEVELS);

    // Open each tenant's pool first, so only the chart's own queries count.
    let mut counts = Vec::new();
    for (tenant, members) in [(small, LEVELS), (large, 1_000)] {
        app.call(
            tenant,
            "{ orgMembers(first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
        let before = app.queries();
        let body = app.call(tenant, &query, json!({})).await;
        let queries = app.queries() - before;
        assert!(body["errors"].is_null(), "{}", &body.to_string()[..500]);
        assert_eq!(measure_chart(&body["data"]["orgChart"]), (members, LEVELS));
        counts.push(queries);
    }
    assert_eq!(
        counts[0], counts[1],
        "queries for 50 and for 1,000 members: {counts:?}"
    );
    assert!(counts[1] <= 2, "the chart took {} queries", counts[1]);

    // The deepest query the schema admits (the parser allows 64 nested
    // selection sets) is served too, on the stack the subgraph asks for.
    let deepest = app.call(large, &chart_query(63), json!({})).await;
    assert!(
        deepest["errors"].is_null(),
        "{}",
        &deepest.to_string()[..500]
    );
    assert_eq!(measure_chart(&deepest["data"]["orgChart"]), (1_000, LEVELS));
    let too_deep = app.call(large, &chart_query(64), json!({})).await;
    assert_eq!(first_code(&too_deep), "BAD_USER_INPUT", "{too_deep}");

    // `manager` and `reports` on a plain list share the one chart query too.
    let before = app.queries();
    let body = app
        .call(
            large,
            "{ orgMembers(first: 100) { nodes { manager { name } reports { name } } } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(app.queries() - before, 2, "one page, one chart");
    app.cleanup().await;
}
