//! A component that claims the matcher's export name, `orgx:peer/matcher@0.1.0`, and its
//! function names, `begin` and `check`, but built from its own WIT with other types. Its imports are allowed and its export
//! name is right, so only type-checking against the host's WIT can refuse it: the `link`
//! stage.

wit_bindgen::generate!({
    inline: "
        package orgx:peer@0.1.0;

        interface matcher {
            begin: func(run-id: string) -> u32;
            check: func(text: string) -> u32;
        }

        world mistyped {
            export matcher;
        }
    ",
});

use exports::orgx::peer::matcher::Guest;

struct Mistyped;

impl Guest for Mistyped {
    fn begin(run_id: String) -> u32 {
        run_id.len() as u32
    }

    fn check(text: String) -> u32 {
        text.len() as u32
    }
}

export!(Mistyped);
