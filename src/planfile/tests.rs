//! The plan format: its words round-trip, and decoding refuses what it must.

use super::*;

/// Every word serialises to the bytes plans have always carried, and reads back from them.
fn words_round_trip<W>(words: &[(W, &str)])
where
    W: Copy + std::fmt::Debug + PartialEq + Serialize + serde::de::DeserializeOwned,
    W: std::str::FromStr<Err = UnknownWord> + std::fmt::Display,
{
    for (word, text) in words {
        assert_eq!(serde_json::to_string(word).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<W>(&format!("\"{text}\"")).unwrap(),
            *word
        );
        assert_eq!(text.parse::<W>().unwrap(), *word);
        assert_eq!(word.to_string(), *text);
    }
    let unknown = "Teleport".parse::<W>().unwrap_err();
    assert_eq!(unknown.word, "Teleport");
}

#[test]
fn plan_words_keep_their_bytes() {
    use RecordAction as R;
    words_round_trip(&[
        (R::Upsert, "UPSERT"),
        (R::Delete, "DELETE"),
        (R::NoOp, "no-op"),
    ]);
    use CertificateAction as C;
    words_round_trip(&[
        (C::Keep, "keep"),
        (C::Issue, "issue"),
        (C::Rotate, "rotate"),
    ]);
    use ResourceAction as A;
    words_round_trip(&[
        (A::Add, "Add"),
        (A::Modify, "Modify"),
        (A::Remove, "Remove"),
        (A::Import, "Import"),
        (A::Dynamic, "Dynamic"),
        (A::SyncWithActual, "SyncWithActual"),
    ]);
    use Replacement as P;
    words_round_trip(&[
        (P::True, "True"),
        (P::False, "False"),
        (P::Conditional, "Conditional"),
    ]);
    use ReplacementSource as S;
    words_round_trip(&[(S::ChangeSet, "change-set"), (S::Forecast, "forecast")]);
}

#[test]
fn what_a_resource_change_means_follows_its_words() {
    let change = |action, replacement| fixtures::resource_change("X", action, replacement);
    use ResourceAction::*;
    let cases = [
        (change(Add, None), "+", false, true),
        (change(Remove, None), "-", false, false),
        (change(Modify, Some(Replacement::True)), "±", true, true),
        (
            change(Modify, Some(Replacement::Conditional)),
            "~",
            false,
            true,
        ),
        (change(Modify, Some(Replacement::False)), "~", false, false),
    ];
    for (c, symbol, replaces, new_identity) in cases {
        assert_eq!(c.symbol(), symbol, "{c:?}");
        assert_eq!(c.replaces(), replaces, "{c:?}");
        assert_eq!(c.may_get_new_identity(), new_identity, "{c:?}");
    }
}
