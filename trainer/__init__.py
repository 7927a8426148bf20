"""Trainers: the Bradley-Terry reward-model trainer and the REINFORCE++ trainer."""
