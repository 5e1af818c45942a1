mod oci;
mod support_smoke;
