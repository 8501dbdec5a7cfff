//! Prefect 3: the shapes of the API objects the agent reads. (The REST client comes with
//! `agent start`.)

pub mod models;
