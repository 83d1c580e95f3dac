//! The `#[plugin]` attribute of `hookwire-guest`. Use it through
//! `hookwire_guest::plugin`; its documentation lives there.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Error, ImplItem, ItemImpl, LitStr, Meta, Token};

/// The hooks of `hookwire:policy` by their `Plugin` method name, with the
/// name of the matching `Hooks` flag (two methods serve `on-msg`).
const HOOKS: &[(&str, &str)] = &[
    ("authenticate", "AUTHENTICATE"),
    ("on_join", "ON_JOIN"),
    ("on_msg", "ON_MSG"),
    ("on_raw_msg", "ON_MSG"),
    ("storage_mode", "STORAGE_MODE"),
    ("route_push", "ROUTE_PUSH"),
];

/// Exports an `impl hookwire_guest::Plugin for T` block as the component's
/// `hookwire:policy` world. See `hookwire_guest::plugin`.
#[proc_macro_attribute]
pub fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let (name, version) = parse_args(args)?;
    let imp: ItemImpl = syn::parse2(item)?;

    let trait_ok = imp
        .trait_
        .as_ref()
        .and_then(|(bang, path, _)| bang.is_none().then_some(path))
        .and_then(|p| p.segments.last())
        .is_some_and(|s| s.ident == "Plugin");
    if !trait_ok {
        return Err(Error::new_spanned(
            &imp.self_ty,
            "#[hookwire_guest::plugin] goes on an `impl Plugin for YourType` block",
        ));
    }
    if !imp.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &imp.generics,
            "a plugin type cannot be generic: a component exports exactly one plugin",
        ));
    }

    // The hooks this block defines are the hooks the host should call; the
    // trait's default bodies are the host's own behaviour, so skipping them
    // changes nothing and saves a call.
    let flags = imp
        .items
        .iter()
        .filter_map(|it| match it {
            ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .filter_map(|m| HOOKS.iter().find(|(h, _)| *h == m))
        .map(|(_, flag)| syn::Ident::new(flag, Span::call_site()));

    let ty = &imp.self_ty;
    let name = match name {
        Some(n) => quote!(#n),
        None => quote!(::core::env!("CARGO_PKG_NAME")),
    };
    let version = match version {
        Some(v) => quote!(#v),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };

    Ok(quote! {
        #imp

        impl ::hookwire_guest::__private::Describe for #ty {
            const INFO: ::hookwire_guest::__private::StaticInfo =
                ::hookwire_guest::__private::StaticInfo {
                    name: #name,
                    version: #version,
                    hooks: ::hookwire_guest::Hooks::empty()
                        #( .union(::hookwire_guest::Hooks::#flags) )*,
                };
        }

        // Exports only exist in a component; a native build (the plugin's
        // unit tests) has no host to call them.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // wit-bindgen's export macro takes an identifier, not a path.
            type __HookwireExport = ::hookwire_guest::__private::Adapter<#ty>;
            ::hookwire_guest::__bindings::__export_policy!(__HookwireExport);
        };
    })
}

fn parse_args(args: proc_macro2::TokenStream) -> syn::Result<(Option<LitStr>, Option<LitStr>)> {
    let (mut name, mut version) = (None, None);
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    for meta in metas {
        let nv = match meta {
            Meta::NameValue(nv) => nv,
            other => {
                return Err(Error::new_spanned(
                    other,
                    "expected `name = \"...\"` or `version = \"...\"`",
                ));
            }
        };
        let lit = match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s.clone(),
            other => return Err(Error::new_spanned(other, "expected a string literal")),
        };
        if nv.path.is_ident("name") {
            name = Some(lit);
        } else if nv.path.is_ident("version") {
            version = Some(lit);
        } else {
            return Err(Error::new_spanned(
                nv.path,
                "unknown argument: expected `name` or `version`",
            ));
        }
    }
    Ok((name, version))
}
