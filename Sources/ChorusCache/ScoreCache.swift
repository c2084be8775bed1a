// Placeholder: the compressed teacher-score cache lands with issue E.
