//! No named kernel objects outside Windows: named synchronization objects are
//! segments there, so nothing calls into this module.
