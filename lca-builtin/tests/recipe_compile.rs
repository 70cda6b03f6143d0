//! The recipe compiler on the built-in components: every problem reported
//! with its position, defaults, source selection, wiring and cycles.

use std::path::{Path, PathBuf};

use lca_core::Error;
use lca_core::component::Component;
use lca_core::recipe::{RecipeProblem, Step, compile};
use lca_core::registry::{ComponentKind, Origin};

fn problems(text: &str) -> Vec<RecipeProblem> {
    match compile(Path::new("r.toml"), text, &lca_builtin::registry()) {
        Err(Error::Recipe(e)) => e.problems,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("recipe compiled"),
    }
}

#[test]
fn compiles_a_valid_recipe_with_defaults() {
    let plan = compile(
        Path::new("dir/r.toml"),
        "[run]\nseed = 7\nout = \"o\"\n[source.s]\ntype = \"synthetic\"\ntokens = 100\nneurons = 20\n",
        &lca_builtin::registry(),
    )
    .unwrap();
    assert_eq!(plan.run.seed, 7);
    assert_eq!(plan.run.out, Some(PathBuf::from("dir/o")));
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].key(), "source.s");
}

#[test]
fn reports_every_problem_with_position() {
    let text = "\
[run]
seed = -1
sed = 3

[source.s]
type = \"synthetic\"
tokens = \"many\"
noise = -1.0

[source.t]
type = \"synthetc\"

[evaluator.e]
type = \"planted_recovery\"
source = \"s\"
rankings = [\"nope\"]

[extra]
";
    let p = problems(text);
    let summary: Vec<String> = p
        .iter()
        .map(|p| format!("{}:{} {} {}", p.line, p.column, p.at, p.message))
        .collect();
    let joined = summary.join("\n");
    assert!(
        joined.contains("2:8 run.seed `seed` must be an integer from 0"),
        "{joined}"
    );
    assert!(
        joined.contains("3:1 run.sed unknown key `sed` in [run]; did you mean `seed`?"),
        "{joined}"
    );
    assert!(
        joined.contains("7:1 source.s.tokens parameter `tokens` must be an integer, found string"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "11:8 source.t.type unknown source type `synthetc`; did you mean `synthetic`?"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("16:12 evaluator.e.rankings no ranker has the id `nope`"),
        "{joined}"
    );
    assert!(
        joined.contains("18:2 extra unknown top-level table `extra`"),
        "{joined}"
    );
    // Problems come in file order.
    assert!(p.windows(2).all(|w| w[0].line <= w[1].line), "{joined}");
}

#[test]
fn range_errors_point_at_the_parameter() {
    let p = problems("[source.s]\ntype = \"synthetic\"\n\nnoise = -1.0\n");
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].line, p[0].column, p[0].at.as_str()),
        (4, 1, "source.s.noise")
    );
    assert!(
        p[0].message
            .contains("parameter `noise` = -1 is not allowed; expected a finite number > 0"),
        "{}",
        p[0].message
    );
}

#[test]
fn syntax_errors_are_reported_with_position() {
    let p = problems("[source.s]\ntype = \"synthetic\nx = 1\n");
    assert!(!p.is_empty());
    assert_eq!(p[0].at, "(syntax)");
    assert_eq!(p[0].line, 2);
}

#[test]
fn wrong_kind_and_missing_type() {
    let p = problems("[ranker.r]\ntype = \"synthetic\"\n[source.s]\nneurons = 3\n");
    let joined: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert!(
        joined
            .iter()
            .any(|m| m.contains("`synthetic` is a source, not a ranker")),
        "{joined:?}"
    );
    assert!(
        joined.iter().any(|m| m.contains("has no `type`")),
        "{joined:?}"
    );
}

#[test]
fn source_defaults_to_the_only_one_and_must_be_chosen_among_several() {
    let text = "[source.a]\ntype = \"synthetic\"\n[evaluator.e]\ntype = \"ranking_overlap\"\nrankings = []\n";
    let p = problems(text);
    assert!(
        p.iter().any(|p| p
            .message
            .contains("needs at least 2 in `rankings`, found 0")),
        "{p:?}"
    );
    let text = "[source.a]\ntype = \"synthetic\"\n[source.b]\ntype = \"synthetic\"\n[evaluator.e]\ntype = \"planted_recovery\"\nrankings = [\"x\"]\n";
    let p = problems(text);
    assert!(
        p.iter()
            .any(|p| p.message.contains("declares 2 sources (a, b)")),
        "{p:?}"
    );
}

#[test]
fn ranking_cycles_are_reported_and_dependencies_ordered() {
    use lca_core::registry::{ComponentInfo, Descriptor, Inputs, Need, applied};
    #[derive(Debug)]
    struct First;
    impl lca_core::Ranker for First {
        fn rank(
            &self,
            input: &lca_core::RankInput<'_>,
            _cx: &lca_core::RunContext,
        ) -> lca_core::Result<lca_core::NeuronRanking> {
            lca_core::NeuronRanking::from_order((0..input.data.n_neurons() as u32).collect())
        }
    }
    let mut registry = lca_builtin::registry();
    registry
        .register_native(
            Descriptor {
                info: ComponentInfo {
                    kind: ComponentKind::Ranker,
                    name: "chain".into(),
                    summary: "test".into(),
                    params: vec![],
                    example: String::new(),
                    inputs: Inputs {
                        rankings: Need::Optional,
                        ..Inputs::default()
                    },
                },
                build: |_| Ok(Component::Ranker(Box::new(First))),
                applied: applied::<()>,
            },
            Origin::builtin(),
        )
        .unwrap();
    let cyclic = "[source.s]\ntype = \"synthetic\"\n[ranker.a]\ntype = \"chain\"\nrankings = [\"b\"]\n[ranker.b]\ntype = \"chain\"\nrankings = [\"a\"]\n";
    let Err(Error::Recipe(e)) = compile(Path::new("r.toml"), cyclic, &registry) else {
        panic!("cycle accepted")
    };
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(
        e.problems[0]
            .message
            .contains("rankers a → b → a read each other in a cycle"),
        "{e}"
    );
    let chained = "[source.s]\ntype = \"synthetic\"\n[ranker.late]\ntype = \"chain\"\nrankings = [\"early\"]\n[ranker.early]\ntype = \"chain\"\n";
    let plan = compile(Path::new("r.toml"), chained, &registry).unwrap();
    let order: Vec<String> = plan.steps.iter().map(Step::key).collect();
    assert_eq!(order, ["source.s", "ranker.early", "ranker.late"]);
}

#[test]
fn wiring_to_the_wrong_kind_is_explained() {
    let text = "[source.a]\ntype = \"synthetic\"\n[evaluator.e]\ntype = \"planted_recovery\"\nrankings = [\"a\"]\n";
    let p = problems(text);
    assert!(
        p.iter().any(|p| p
            .message
            .contains("`a` is a source, but this must name a ranker")),
        "{p:?}"
    );
}
