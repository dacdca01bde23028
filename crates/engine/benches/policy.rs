//! CPU of what one event costs besides network calls, for a policy near the 32 KB KMS limit:
//! render + validate the baseline, parse + compare the live policy, and on drift the diff
//! and the access explanation (`assess`, what the replica stage runs); in `contains` mode,
//! the extras judged and what they add to the merged document validated; the write's own
//! exposure (the explanation from the live policy to what is written) and the guardrails.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use krg_engine::baseline::{RenderContext, Template};
use krg_engine::decide::drift_name;
use krg_engine::key::KeyArn;
use krg_policy::{
    CanonicalPolicy, LockoutGuard, Origin, Trust, Verdict, assess, assess_parsed, compare,
    contain_with, diff, explain, guardrails, validate, validate_as, validate_merged,
};
use serde_json::{Value, json};

/// A baseline template of about 32 KB: the usual statements plus many application grants.
fn big_template() -> String {
    let mut statements = vec![
        json!({"Sid": "EnableRootAccess", "Effect": "Allow",
               "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:root"},
               "Action": "kms:*", "Resource": "*"}),
        json!({"Sid": "AllowKmsReplicaGuard", "Effect": "Allow",
               "Principal": {"AWS": "arn:{{Partition}}:iam::{{AccountId}}:role/kms-replica-guard-remediator"},
               "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListResourceTags"],
               "Resource": "*"}),
    ];
    let mut i = 0;
    loop {
        statements.push(json!({
            "Sid": format!("App{i:03}"), "Effect": "Allow",
            "Principal": {"AWS": [format!("arn:aws:iam::{{{{AccountId}}}}:role/app-{i}"),
                                   format!("arn:aws:iam::{{{{AccountId}}}}:role/app-{i}-batch")]},
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": "s3.{{Region}}.amazonaws.com",
                                           "aws:PrincipalTag/team": format!("team-{i}")}}
        }));
        let text = serde_json::to_string_pretty(
            &json!({"Version": "2012-10-17", "Statement": statements}),
        )
        .unwrap();
        if text.len() > 30_500 {
            return text;
        }
        i += 1;
    }
}

/// The same document, reordered and re-cased: semantically equal, textually different.
fn reformatted(rendered: &str) -> String {
    let mut v: Value = serde_json::from_str(rendered).unwrap();
    let statements = v["Statement"].as_array_mut().unwrap();
    statements.reverse();
    for s in statements.iter_mut() {
        if let Some(actions) = s["Action"].as_array_mut() {
            actions.reverse();
            for a in actions.iter_mut() {
                *a = Value::String(a.as_str().unwrap().to_uppercase());
            }
        }
    }
    serde_json::to_string(&v).unwrap()
}

fn bench(c: &mut Criterion) {
    let template = Template::new("bench", big_template()).unwrap();
    let key: KeyArn = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        .parse()
        .unwrap();
    let ctx = RenderContext {
        key: &key,
        primary_region: &"us-east-1".parse().unwrap(),
    };
    let guard = LockoutGuard {
        key_arn: key.to_string(),
        account_id: "111122223333".into(),
        partition: "aws".into(),
        remediator_role_arn: Some(
            "arn:aws:iam::111122223333:role/kms-replica-guard-remediator".into(),
        ),
    };
    let rendered = template.render(ctx);
    let live_equal = reformatted(&rendered);
    let live_drifted = rendered.replacen("team-7", "team-X", 1);
    eprintln!(
        "policy sizes: rendered {} bytes, reformatted {} bytes",
        rendered.len(),
        live_equal.len()
    );
    let desired = validate(&rendered, &guard).unwrap();
    assert_eq!(compare(&live_equal, &desired), Verdict::InSync);

    c.bench_function("render + validate 32 KB baseline", |b| {
        b.iter(|| validate(&template.render(black_box(ctx)), &guard).unwrap())
    });
    c.bench_function("compare 32 KB live policy (in sync)", |b| {
        b.iter(|| compare(black_box(&live_equal), &desired))
    });
    c.bench_function("one event, in sync: render + validate + compare", |b| {
        b.iter(|| {
            let text = template.render(black_box(ctx));
            let desired = validate(&text, &guard).unwrap();
            compare(black_box(&live_equal), &desired)
        })
    });
    let own = Trust::own("arn:aws:iam::111122223333:root");
    let own = &own;
    c.bench_function(
        "one event, drifted: render + validate + assess (compare + diff + explanation)",
        |b| {
            b.iter(|| {
                let text = template.render(black_box(ctx));
                let desired = validate(&text, &guard).unwrap();
                assess(black_box(&live_drifted), &desired, own)
            })
        },
    );
    c.bench_function(
        "one event, drifted, enforce: render + validate + assess + drift name",
        |b| {
            b.iter(|| {
                let text = template.render(black_box(ctx));
                let desired = validate(&text, &guard).unwrap();
                let verdict = assess(black_box(&live_drifted), &desired, own);
                (verdict, drift_name(black_box(&live_drifted), &text))
            })
        },
    );
    c.bench_function("drift name of two 32 KB policies (the write claim)", |b| {
        b.iter(|| drift_name(black_box(&live_drifted), black_box(&rendered)))
    });
    let live = CanonicalPolicy::parse(&live_drifted).unwrap();
    c.bench_function("diff of a 32 KB policy with one changed statement", |b| {
        b.iter(|| diff(black_box(&live), &desired).to_string())
    });
    c.bench_function(
        "explanation of a 32 KB policy with one changed statement",
        |b| b.iter(|| explain(&desired, black_box(&live), own)),
    );
    // Every write judged both ways: what the write grants beyond the live policy.
    c.bench_function(
        "write exposure: explanation from the live 32 KB policy to what is written",
        |b| b.iter(|| explain(black_box(&live), &desired, own)),
    );
    c.bench_function("guardrails of a 32 KB policy", |b| {
        b.iter(|| guardrails(black_box(&desired), own))
    });
    // BASELINE_MATCH=contains: the live policy is the baseline plus four same-account DR
    // statements (kept), and in the drifted case two public grants as well (removed).
    let extras = |public: usize| {
        let mut v: Value = serde_json::from_str(&live_equal).unwrap();
        let list = v["Statement"].as_array_mut().unwrap();
        for i in 0..4 {
            list.push(json!({"Sid": format!("DrRestore{i}"), "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::111122223333:role/dr-restore-{i}")},
                "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}));
        }
        for i in 0..public {
            list.push(json!({"Sid": format!("Open{i}"), "Effect": "Allow",
                "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}));
        }
        serde_json::to_string(&v).unwrap()
    };
    let (kept, opened) = (extras(0), extras(2));
    eprintln!(
        "contains mode: live {} bytes (4 extras), {} bytes (4 + 2 public)",
        kept.len(),
        opened.len()
    );
    assert!(opened.len() <= krg_policy::MAX_POLICY_BYTES);
    assert!(contain_with(&kept, &rendered, &desired, own).satisfied());
    // What the replica stage runs in contains mode: the live policy parsed once (by
    // contain_with, for assess_parsed), and of the merged document only what the kept
    // extras add validated (validate_merged).
    let contains_event = |live: &str| {
        let text = template.render(black_box(ctx));
        let desired = validate(&text, &guard).unwrap();
        let c = contain_with(black_box(live), &text, &desired, own);
        let merged = validate_merged(&c, &desired, &guard).unwrap();
        assess_parsed(black_box(live), c.live.as_ref(), &merged.policy, own)
    };
    assert_eq!(contains_event(&kept).0, Verdict::InSync);
    assert!(matches!(contains_event(&opened).0, Verdict::Drift(_)));
    {
        // The shortcut is the same as validating and assessing the whole merged document.
        let c = contain_with(&opened, &rendered, &desired, own);
        let whole = validate_as(&c.merged, &guard, Origin::Mirrored).unwrap();
        assert_eq!(validate_merged(&c, &desired, &guard).unwrap(), whole);
        assert_eq!(contains_event(&opened), assess(&opened, &whole.policy, own));
    }
    c.bench_function(
        "one event, contains, in sync: render + validate + contain + validate extras + assess (4 extras kept)",
        |b| b.iter(|| contains_event(&kept)),
    );
    c.bench_function(
        "one event, contains, drifted: render + validate + contain + validate extras + assess",
        |b| b.iter(|| contains_event(&opened)),
    );
    let e = explain(&desired, &live, own);
    // One statement changed its condition: its two principals gain and lose, nobody else.
    assert_eq!((e.gains.len(), e.losses.len()), (2, 2), "{e:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
