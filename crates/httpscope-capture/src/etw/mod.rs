//! Windows HTTP.sys ETW events to transactions (in progress).
