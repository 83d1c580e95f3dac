//! Hostile test plugin: a valid WebAssembly component that implements a
//! world of its own, not `hookwire:policy`. Uploading it must be refused as
//! "wrong world" (it is a component, so not "not a component").

wit_bindgen::generate!({
    inline: "
        package example:greeter@1.0.0;

        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
